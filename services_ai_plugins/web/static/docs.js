// Swagger UI for /openapi.json (an external file: the Content Security Policy runs no inline script).
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
