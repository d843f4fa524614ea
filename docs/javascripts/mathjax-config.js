// MathJax settings for pymdownx.arithmatex (generic mode). MathJax itself is loaded from a CDN (mkdocs.yml), not
// bundled: formulas render as TeX source when the site is read offline.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
