// Starts Swagger UI on /docs with the document and settings the page names in data-
// attributes: a file of the service's own, so the page needs no inline script.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  var config = { url: container.dataset.url, dom_id: "#swagger-ui-container" };
  var given = JSON.parse(container.dataset.config);
  for (var name in given) {
    config[name] = given[name];
  }
  window.ui = SwaggerUIBundle(config);
});
