// MathJax settings for pymdownx.arithmatex (generic mode). MathJax itself is not bundled: formulas render as
// TeX source when the page is read offline.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
