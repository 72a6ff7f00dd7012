"""The store dashboard: one page with every basket live (server-sent events), start / end /
checkout per basket, a receipts page with the day's totals, the fleet page (every basket's
health and alerts), and the JSON API the pages use.
FastAPI on uvicorn, one module per concern; each imports only those above it:

    access    bind address and token (access_from_env), Guard: token, Host and Origin checks
    headers   security headers on every response, the API docs page and its CSP
    limits    DashboardApp (headers on every answer, at most MAX_FEEDS live feeds) and
              SlowClientGuard (request deadline, at most MAX_CONNECTIONS connections)
    reader    the dashboard's database connections (Reader, operate), the board with its
              fleet alerts and the fleet rows, and one-line errors
    events    Hub: the live feed (snapshot, basket, fleet, receipt, health, ping)
    schemas   the API's response models and parameters, the ?day= rules
    routes    create_app: the pages, reads, live feed and session operations, error answers
    server    Dashboard: the listening socket and uvicorn in a thread (`web`, `serve --http`)

Nothing here imports this package's __init__; callers import the module they need."""
