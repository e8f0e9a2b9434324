// Swagger UI on the OpenAPI document of this insights (fetched with the browser's cookie).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
