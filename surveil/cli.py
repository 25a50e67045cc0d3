"""The ``surveil`` command.

    surveil demo                               a bundled two-platform market, replayed, alerts shown
    surveil replay FILE... --ref DIR --db DB   replay files of any supported format in event-time order
    surveil alerts --db DB [filters]           list alerts, or one alert with its evidence
    surveil sql "SELECT ..." --db DB           any read-only SQL over alerts, evidence and archived events
    surveil dashboard --db DB                  the analyst dashboard on http://127.0.0.1:8765
    surveil scenario generate --out DIR        write a labelled synthetic market
    surveil run --config surveil.toml          the live surveillance daemon (--check: validate only)
    surveil detectors                          the detector catalogue with parameters and units
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

# Piped output (CI logs, `| less`) gets a wide console instead of rich's 80-column default.
console = Console() if Console().is_terminal else Console(width=200)
err = Console(stderr=True, soft_wrap=True)  # error lines stay whole for grep and logs

_ALERT_FILTERS = {"detector": "detector", "instrument": "instrument", "severity": "severity"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surveil", description="Real-time cross-venue market surveillance: "
                                "replay venue data through detectors into a DuckDB alert store and investigate it.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", help="generate a two-platform shared-book market, replay it, show the alerts")
    d.add_argument("--out", default="demo-out", help="working directory for the market and the database (default: %(default)s)")
    d.add_argument("--minutes", type=int, default=10, help="length of the generated market (default: %(default)s)")
    d.add_argument("--seed", type=int, default=7, help="random seed of the market (default: %(default)s)")

    r = sub.add_parser("replay", help="replay files (FIX drop copy, tardis/Binance/ccxt CSV, canonical Parquet/JSONL/CSV)")
    r.add_argument("paths", nargs="+", metavar="PATH", help="input files; format recognised from content and extension")
    r.add_argument("--db", required=True, help="DuckDB file to write alerts into (created if missing)")
    r.add_argument("--ref", help="directory with instruments.csv, accounts.csv, owner_links.csv")
    r.add_argument("--format", choices=None, help="force the format of every PATH (see `surveil replay --help`)")
    r.add_argument("--venue", help="venue of files whose rows carry none (Binance, ccxt CSV)")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="pace the replay at N× real time")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    r.add_argument("--config", help="TOML configuration ([pipeline], [detectors.*])")
    r.add_argument("--batch-rows", type=int, help="rows per Arrow batch (default 65536)")
    r.add_argument("--workers", type=int, default=1, help="Bytewax worker threads (default: %(default)s)")
    r.add_argument("--archive", help="Parquet archive directory (default: next to the database)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = sub.add_parser("alerts", help="list alerts (newest window first), or show one with --id")
    a.add_argument("--db", required=True)
    a.add_argument("--detector")
    a.add_argument("--instrument")
    a.add_argument("--severity", choices=["low", "medium", "high"])
    a.add_argument("--owner", help="alerts naming this beneficial owner")
    a.add_argument("--venue", help="alerts involving this venue")
    a.add_argument("--since", help="window ends at or after this time (ISO-8601)")
    a.add_argument("--until", help="window starts before this time (ISO-8601)")
    a.add_argument("--id", dest="alert_id", help="show one alert with its evidence")
    a.add_argument("--limit", type=int, default=50)

    q = sub.add_parser("sql", help="run read-only SQL against a surveil database")
    q.add_argument("query", nargs="?", help="SQL; tables: alerts, alert_evidence, dead_letters, late_events, runs, "
                   "ref_instruments, ref_accounts, ref_owner_links; views: trades, orders, quotes")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--db", help="a surveil DuckDB file")
    where.add_argument("--url", help="a running daemon's dashboard (e.g. http://127.0.0.1:8765): the daemon holds "
                       "its database file, so queries go through it")
    q.add_argument("--token", help="the dashboard's access token (with --url)")
    q.add_argument("--saved", metavar="NAME", help="run a saved investigation from dashboards/ (see --list)")
    q.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter of --saved")
    q.add_argument("--list", action="store_true", help="list the saved investigations and their parameters")
    q.add_argument("--csv", action="store_true", help="print CSV instead of a table")

    w = sub.add_parser("dashboard", help="serve the analyst dashboard (blotter, alert detail, dispositions, audit log, SQL)")
    w.add_argument("--db", required=True, help="surveil DuckDB file (opened writable: dispositions are recorded in it)")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; any other needs --token)")
    w.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    w.add_argument("--token", help="access token every request must carry (required off loopback)")
    w.add_argument("--archive", help="Parquet archive directory, if it moved away from the database")

    s = sub.add_parser("scenario", help="labelled synthetic markets")
    ssub = s.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    g = ssub.add_parser("generate", help="write a labelled two-platform market")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--minutes", type=int, default=10)
    g.add_argument("--rate", type=float, default=1500.0, help="events per second on average (default: %(default)s)")
    g.add_argument("--formats", default="canonical,fix,tardis", help="comma-separated: canonical, fix, tardis")
    g.add_argument("--episodes", default="default",
                   help="labelled episode types: default (wash_trade, price_dislocation), all, or a comma list")

    sub.add_parser("detectors", help="list detectors with their parameters, defaults and units")

    n = sub.add_parser("run", help="the live surveillance daemon: FIX drop copy, Kafka, WebSocket and tailed-file "
                       "sources through the dataflow into DuckDB, with recovery, metrics and health")
    n.add_argument("--config", required=True, help="TOML configuration (see README: Run the daemon)")
    n.add_argument("--check", action="store_true", help="validate the configuration (and reach Kafka) and exit")
    n.add_argument("--workers", type=int, default=1, help="Bytewax worker threads in this process")
    n.add_argument("--process-id", type=int, help="this process's index in a cluster (with --addresses)")
    n.add_argument("--addresses", help="host:port of every process of the cluster, comma-separated, in order")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"demo": cmd_demo, "replay": cmd_replay, "alerts": cmd_alerts, "sql": cmd_sql,
                "scenario": cmd_scenario, "detectors": cmd_detectors, "run": cmd_run,
                "dashboard": cmd_dashboard}[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


# -- commands ----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from flows.daemon import StartupError, preflight, run_daemon, setup_logging
    from surveil.daemon_config import load_daemon_config

    cfg = load_daemon_config(args.config)
    if (args.process_id is None) != (args.addresses is None):
        raise ValueError("--process-id and --addresses go together")
    addresses = args.addresses.split(",") if args.addresses else None
    if addresses and not 0 <= args.process_id < len(addresses):
        raise ValueError(f"--process-id must index --addresses (0..{len(addresses) - 1})")
    try:
        preflight(cfg)
    except StartupError as e:
        err.print(f"[bold red]error:[/] {e}")
        return 2
    if args.check:
        console.print(f"{args.config}: ok — {len(cfg.sources)} source(s): "
                      + ", ".join(f"{s.name} ({s.type})" for s in cfg.sources))
        return 0
    setup_logging()
    return run_daemon(cfg, workers=args.workers, process_id=args.process_id, addresses=addresses)


def cmd_scenario(args) -> int:
    from replay.scenario import generate

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    summary = generate(args.out, seed=args.seed, minutes=args.minutes, events_per_second=args.rate, formats=formats,
                       episode_types=args.episodes)
    console.print(f"wrote a {args.minutes}-minute market (seed {args.seed}) to [bold]{args.out}[/]: {summary}")
    return 0


def cmd_replay(args) -> int:
    from flows.pipeline import PipelineConfig
    from replay.merge import InputSpec
    from surveil.config import load_config

    cfg = load_config(args.config)
    pipeline = dict(cfg.pipeline)
    if args.batch_rows:
        pipeline["batch_rows"] = args.batch_rows
    if args.speed:
        pipeline["speed"] = args.speed
    inputs = [InputSpec(p, args.format, args.venue) for p in args.paths]
    summary = _replay_with_progress(inputs, args.db, args.ref, PipelineConfig(**pipeline), cfg.detectors,
                                    args.workers, args.archive, not args.no_progress)
    _print_run(summary)
    return 0


def _replay_with_progress(inputs, db, ref, cfg, detector_config, workers=1, archive=None, show=True, command="replay"):
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flows.jobs import run_replay

    if not show:
        return run_replay(inputs, db_path=db, ref_dir=ref, cfg=cfg, detector_config=detector_config,
                          workers=workers, archive_dir=archive, command=command)
    with Progress(SpinnerColumn(), TextColumn("[bold]replaying[/]"), BarColumn(bar_width=None),
                  TextColumn("{task.completed:,.0f} events"), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("replay", total=None, rate="")
        import time

        t0 = time.perf_counter()

        def advance(n: int) -> None:
            done = progress.tasks[0].completed + n
            rate = done / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=n, rate=f"{rate:,.0f} ev/s")

        return run_replay(inputs, db_path=db, ref_dir=ref, cfg=cfg, detector_config=detector_config,
                          workers=workers, archive_dir=archive, progress=advance, command=command)


def _print_run(s) -> None:
    derived = f" (+{s.derived:,} trades paired from FIX fills)" if s.derived else ""
    console.print(f"run [bold]{s.run_id}[/]: {s.events:,} events{derived} in {s.seconds:.2f}s "
                  f"([bold]{s.events_per_s:,.0f} events/s[/]), {s.alerts} alert(s), "
                  f"{s.dead_letters} dead letter(s), {s.late_events} late event(s) → {s.db_path}")


def cmd_demo(args) -> int:
    from flows.pipeline import PipelineConfig
    from replay.merge import InputSpec
    from replay.scenario import generate

    out = Path(args.out)
    market = out / "market"
    console.print(f"[bold]1/3[/] generating a {args.minutes}-minute shared-order-book market "
                  f"(HKVATP + OVSAFF on SHARED, reference venue REFX) into {market}")
    generate(market, seed=args.seed, minutes=args.minutes, formats=("canonical", "fix", "tardis"))
    inputs = [InputSpec(str(p)) for p in sorted((market / "fix").glob("*.fix"))]
    inputs += [InputSpec(str(p)) for p in sorted((market / "tardis").glob("*.csv"))]
    db = out / "surveil.duckdb"
    console.print(f"[bold]2/3[/] replaying the platforms' FIX drop copies and REFX's public trades "
                  f"through the dataflow into {db}")
    s = _replay_with_progress(inputs, db, market / "ref", PipelineConfig(), None, command="demo")
    _print_run(s)
    console.print("[bold]3/3[/] alerts found")
    _show_alerts(str(db), {}, 20)
    labels = market / "labels.json"
    console.print(f"\nThe market's injected episodes are labelled in {labels}.")
    console.print("Look further with SQL, for example:\n"
                  f"  surveil alerts --db {db}\n"
                  f"  surveil alerts --db {db} --id <alert_id>\n"
                  f"  surveil sql \"SELECT detector, severity, count(*) FROM alerts GROUP BY ALL\" --db {db}\n"
                  f"  surveil sql \"SELECT * FROM alert_evidence WHERE alert_id = '<alert_id>'\" --db {db}\n"
                  f"  surveil sql \"SELECT venue, instrument, count(*), avg(price) FROM trades GROUP BY ALL\" --db {db}")
    return 0


def cmd_alerts(args) -> int:
    if args.alert_id:
        return _show_alert(args.db, args.alert_id)
    filters = {k: getattr(args, k) for k in ("detector", "instrument", "severity", "owner", "venue", "since", "until")}
    _show_alerts(args.db, filters, args.limit)
    return 0


def _show_alerts(db: str, filters: dict, limit: int) -> None:
    from surveil.store import connect_readonly

    where, params = [], []
    for k in ("detector", "instrument", "severity"):
        if filters.get(k):
            where.append(f"{k} = ?")
            params.append(filters[k])
    if filters.get("owner"):
        where.append("list_contains(owners, ?)")
        params.append(filters["owner"])
    if filters.get("venue"):
        where.append("list_contains(venues, ?)")
        params.append(filters["venue"])
    if filters.get("since"):
        where.append("window_end >= CAST(? AS TIMESTAMPTZ)")
        params.append(filters["since"])
    if filters.get("until"):
        where.append("window_start < CAST(? AS TIMESTAMPTZ)")
        params.append(filters["until"])
    sql = ("SELECT alert_id, detector, severity, instrument, "
           "strftime(window_start, '%Y-%m-%d %H:%M:%S') AS start, "
           "round((epoch_ns(window_end) - epoch_ns(window_start)) / 1e9, 1) AS secs, summary FROM alerts"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY window_start DESC, alert_id LIMIT ?")
    con = connect_readonly(db)
    try:
        total = con.execute("SELECT count(*) FROM alerts" + (" WHERE " + " AND ".join(where) if where else ""),
                            params).fetchone()[0]
        rel = con.execute(sql, params + [limit])
        _print_result(rel.description, rel.fetchall(), title=f"{total} alert(s)" + (f", newest {limit} shown" if total > limit else ""))
    finally:
        con.close()


def _show_alert(db: str, alert_id: str) -> int:
    from surveil.store import connect_readonly

    con = connect_readonly(db)
    try:
        rel = con.execute("SELECT * FROM alerts WHERE alert_id = ?", [alert_id])
        row = rel.fetchone()
        if row is None:
            err.print(f"no alert {alert_id!r} in {db}")
            return 1
        t = Table(show_header=False, title=f"alert {alert_id}")
        for (name, *_), value in zip(rel.description, row):
            t.add_row(name, str(value))
        console.print(t)
        ev = con.execute("SELECT * EXCLUDE (alert_id) FROM alert_evidence WHERE alert_id = ? ORDER BY ts, src, src_seq", [alert_id])
        names, rows = [d[0] for d in ev.description], ev.fetchall()
        keep = [i for i in range(len(names)) if any(r[i] is not None for r in rows)]  # columns this evidence uses
        _print_result([ev.description[i] for i in keep], [[r[i] for i in keep] for r in rows], title="evidence")
    finally:
        con.close()
    return 0


def cmd_sql(args) -> int:
    import duckdb

    from surveil.store import connect_readonly

    import dashboards

    if args.list:
        for name in dashboards.list_saved():
            _, params, about = dashboards.saved(name)
            console.print(f"[bold]{name}[/] ({', '.join(params)}): {about}")
        return 0
    params: dict[str, str] | None = None
    if args.saved:
        query, wanted, _ = dashboards.saved(args.saved)
        params = dict(p.split("=", 1) for p in args.param if "=" in p)
        missing = [w for w in wanted if w not in params]
        if missing or len(params) != len(args.param):
            raise ValueError(f"{args.saved} takes --param {' --param '.join(f'{w}=…' for w in wanted)}"
                             + (f"; missing {', '.join(missing)}" if missing else ""))
        params = {k: v for k, v in params.items() if k in wanted}
    elif args.query:
        query = args.query
    else:
        raise ValueError("give a SQL query, --saved NAME or --list")
    if not (args.db or args.url):
        raise ValueError("give --db FILE, or --url of a running daemon's dashboard")
    if args.url:
        description, rows = _remote_sql(args.url, args.token, query, params)
    else:
        try:
            con = connect_readonly(args.db)
        except duckdb.IOException as e:
            raise ValueError(f"{args.db} is held by another process (a running `surveil run`?): query it through "
                             f"its dashboard with --url http://HOST:PORT ({e})") from None
        try:
            rel = con.execute(query, params) if params else con.execute(query)
            if rel.description is None:
                return 0
            description = rel.description
            rows = rel.fetchall()
        except duckdb.Error as e:
            err.print(f"[bold red]SQL error:[/] {e}")
            return 1
        finally:
            con.close()
    if args.csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([d[0] for d in description])
        w.writerows(rows)
    else:
        _print_result(description, rows, title=f"{len(rows)} row(s)")
    return 0


def _remote_sql(url: str, token: str | None, query: str, params: dict | None) -> tuple[list, list]:
    """Run read-only SQL through a dashboard's console (the same refusal of writes applies)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    import orjson

    form = {"query": query, **{f"p_{k}": v for k, v in (params or {}).items()}}
    req = urllib.request.Request(url.rstrip("/") + "/sql", data=urllib.parse.urlencode(form).encode(),
                                 headers={"Accept": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        detail = e.read()
        try:
            detail = orjson.loads(detail).get("error", detail)
        except orjson.JSONDecodeError:
            pass
        raise ValueError(f"{url}: {detail}") from None
    except urllib.error.URLError as e:
        raise ValueError(f"{url}: cannot reach the dashboard ({e.reason})") from None
    return [(c,) for c in body["columns"]], [tuple(r) for r in body["rows"]]


def cmd_dashboard(args) -> int:
    import duckdb

    from dashboards.app import check_bind, create_app, serve

    check_bind(args.host, args.token)  # before opening anything: a refused bind leaves no trace
    db = Path(args.db)
    if not db.exists():
        raise FileNotFoundError(f"no surveil database at {db} (run `surveil demo` or `surveil replay … --db {db}` first)")
    try:
        con = duckdb.connect(str(db))  # the one writer of this file while the dashboard runs (dispositions)
    except duckdb.IOException as e:
        raise ValueError(f"{db} is open in another process (a running `surveil run`?); that process serves the "
                         f"dashboard itself") from e
    app = create_app(con.cursor, token=args.token, archive_dir=args.archive, db_label=db.name)
    console.print(f"dashboard on [bold]http://{args.host}:{args.port}/[/] over {db} (Ctrl-C to stop)")
    try:
        serve(app, host=args.host, port=args.port, token=args.token)
    finally:
        con.close()
    return 0


def cmd_detectors(args) -> int:
    from detectors import describe

    t = Table(title="detectors")
    for c in ("detector", "keyed by", "parameter", "default", "unit", "meaning"):
        t.add_column(c)
    last = None
    for r in describe():
        first = r["detector"] != last
        t.add_row(r["detector"] if first else "", r["keyed_by"] if first else "", r["parameter"], str(r["default"]),
                  r["unit"], r["meaning"], end_section=False)
        last = r["detector"]
    console.print(t)
    return 0


def _print_result(description, rows, title: str = "") -> None:
    t = Table(title=title, show_lines=False)
    for d in description:
        wide = d[0] in ("summary", "raw", "reason", "params", "metrics")
        t.add_column(d[0], overflow="fold", no_wrap=not wide, ratio=3 if wide else None)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())
