"""The HTTP side: routes (app), the event-loop server (server) with its sockets (listen),
connection limits (slots), basic auth (auth), and the web config (webconfig, reload)."""
