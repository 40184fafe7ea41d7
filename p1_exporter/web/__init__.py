"""The HTTP side: routes, the server, TLS and basic auth from the web config."""
