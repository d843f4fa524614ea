// MathJax settings for pymdownx.arithmatex (generic mode). MathJax itself is served by the site
// (javascripts/mathjax/, copied from an installed package at build time by docs/scripts/mkdocs_hooks.py).
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  loader: { load: [] },
};
