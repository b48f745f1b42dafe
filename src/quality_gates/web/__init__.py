"""The web plane: the public status page (`/status`, `/status.json`) and the operator
dashboard (`/`), served by `serve --admin-port` or `quality-gates dashboard`.

- `public.public_status(conn, config, env)`: what the public page shows (JSON-ready);
- `operator.dashboard_view(conn, config, env)`: what the dashboard shows;
- `components.components(conn, config, env)`: component statuses and the rules behind them;
- `app.create_web_app(WebAppSettings(...))`: the ASGI app; `server.AdminServer` runs it beside
  the gateway.
"""
