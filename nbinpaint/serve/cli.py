"""``nbinpaint serve``: start a workshop server (or, with ``--status``, print a running one's state)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from nbinpaint.requests import DEFAULT_MODEL
from nbinpaint.serve.auth import DEFAULT_MAX_SESSIONS, mint_tokens_file, new_token, read_tokens_file
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.hub import HubSettings
from nbinpaint.serve.policy import Limits

__all__ = ["config_from_args", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    defaults = Limits()
    p = argparse.ArgumentParser(
        prog="nbinpaint serve",
        description="Serve nbinpaint's pipeline manager to a class of notebook kernels, on Ray Serve. "
        "Participants connect with nbinpaint.connect(URL, token=...) or NBINPAINT_SERVER/NBINPAINT_TOKEN.",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=[DEFAULT_MODEL],
        metavar="REPO_ID",
        help="checkpoints every replica loads at start (and allows)",
    )
    p.add_argument(
        "--allow",
        nargs="+",
        default=[],
        metavar="REPO_ID",
        help="further checkpoints participants may use, loaded on first use",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for a network)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--route-prefix", default="/", help="URL path the server lives under")
    p.add_argument("--twins", action="store_true", help="serve tiny random-weight twins (offline; for trying it out)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto, or head-node:6379) instead of starting Ray")
    p.add_argument("--replicas", type=int, help="pipeline replicas (default: one per GPU, or one on a CPU)")
    p.add_argument("--token", help="the shared token (default: $NBINPAINT_TOKEN, else a new one is printed)")
    p.add_argument("--tokens", metavar="FILE", help="per-user tokens: lines 'user token', or a JSON object")
    p.add_argument("--admin-token", help="token for the admin status (default: any participant token)")
    p.add_argument(
        "--mint-tokens",
        nargs="+",
        metavar="NAME",
        help="write a token for each NAME (or a number N: participant-01..N) into the --tokens FILE, then exit; "
        "names already in it keep theirs",
    )
    p.add_argument(
        "--hub",
        nargs="?",
        const="",
        metavar="API_URL",
        help="also accept each JupyterHub user's own API token (their kernel's $JUPYTERHUB_API_TOKEN), checked "
        "with the hub at API_URL (default: $JUPYTERHUB_API_URL, set when this runs as a hub service)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help="most live sessions on the shared token (each kernel opens one when it connects)",
    )
    p.add_argument("--max-pixels", type=int, default=defaults.max_pixels, help="largest image, width x height")
    p.add_argument(
        "--max-steps",
        type=int,
        default=defaults.max_steps,
        help="most denoising steps per request: steps, a timesteps or sigmas list, each *_num_inference_steps",
    )
    p.add_argument(
        "--max-chain-stages",
        type=int,
        default=defaults.max_chain_stages,
        help="most stages in one chain (each stage takes its own turn in the queue)",
    )
    p.add_argument(
        "--max-chain-steps",
        type=int,
        help="most denoising steps of a whole chain, summed over its stages (default: 3 x --max-steps)",
    )
    p.add_argument("--max-images", type=int, default=defaults.max_images, help="most images per request")
    p.add_argument(
        "--max-outstanding",
        type=int,
        default=defaults.max_outstanding,
        help="requests one participant may have waiting or running",
    )
    p.add_argument(
        "--max-batch-size",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="run up to N participants' compatible requests (same model, task, size, steps...) as one batched "
        "pipeline call per replica; 1 (the default) turns batching off. A GPU serves several images for little "
        "more than the cost of one: e.g. 4",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=_milliseconds,
        default=20.0,
        metavar="M",
        help="how long a replica waits for more requests to fill a batch (default 20)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads per replica")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available on each replica)")
    p.add_argument("--offload", default="none", choices=["none", "model", "sequential"])
    p.add_argument(
        "--status",
        action="store_true",
        help="print the queue, per-model load and memory of a running server, then exit",
    )
    p.add_argument("--url", help="with --status: the server (default: $NBINPAINT_SERVER, else http://HOST:PORT)")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[ServerConfig, bool]:
    """The server's settings, and whether its token was generated here (then it is printed)."""
    token = args.token or os.environ.get("NBINPAINT_TOKEN")
    users: dict[str, str] = {}
    if args.tokens:
        users = read_tokens_file(args.tokens)
    hub = HubSettings.from_env(args.hub or None) if args.hub is not None else None
    generated = not token and not users and hub is None
    if generated:
        token = new_token()
    limits = Limits(
        max_pixels=args.max_pixels,
        max_steps=args.max_steps,
        max_images=args.max_images,
        max_outstanding=args.max_outstanding,
        max_chain_stages=args.max_chain_stages,
        max_chain_steps=args.max_chain_steps,
    )
    config = ServerConfig(
        models=tuple(args.models),
        allow=tuple(args.allow),
        host=args.host,
        port=args.port,
        route_prefix=args.route_prefix,
        token=token,
        users=users,
        admin_token=args.admin_token,
        hub=hub,
        max_sessions=args.max_sessions,
        limits=limits,
        twins=args.twins,
        address=args.address,
        replicas=args.replicas,
        threads=args.threads,
        device=args.device,
        offload=args.offload,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
    )
    return config, generated


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1 (1: no batching)")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds >= 0")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.mint_tokens:
        if not args.tokens:
            parser().error("--mint-tokens needs --tokens FILE: the tokens file to write")
        try:
            users, new = mint_tokens_file(args.tokens, args.mint_tokens)
        except ValueError as error:
            parser().error(str(error))
        print(
            f"{args.tokens}: {len(users)} participant tokens ({new} new), readable by you only. Give each "
            f"participant their line's token (NBINPAINT_TOKEN), then: nbinpaint serve --tokens {args.tokens} ..."
        )
        return 0
    if args.status:
        from nbinpaint.remote import from_env

        url = args.url or os.environ.get("NBINPAINT_SERVER") or f"http://127.0.0.1:{args.port}"
        print(from_env(url, args.admin_token or args.token).server_status())
        return 0
    config, generated = config_from_args(args)
    from nbinpaint.serve.app import check_port, start, stop
    from nbinpaint.serve.errors import ServerError

    try:
        if not config.address:  # a cluster joined with --address may already serve on its own port
            check_port(config.host, config.port)  # before Ray starts: nothing to shut down if it is taken
    except ServerError as error:
        print(f"nbinpaint serve: {error}", file=sys.stderr)
        return 1
    print(
        f"nbinpaint serve: starting Ray Serve with {', '.join(config.models)}"
        f"{' (twins)' if config.twins else ''}"
        f"{f', batches of up to {config.max_batch_size}' if config.max_batch_size > 1 else ''}; "
        "replicas load their models before it answers..."
    )
    # SIGTERM (kill, systemd, a container stopping) ends the server as Ctrl-C does: through the finally
    # below, so Ray and its processes are shut down instead of outliving this one.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url = start(config)
        signal.signal(signal.SIGTERM, _interrupt)  # again: ray.init installs its own, which aborts the process
        print(f"\nnbinpaint workshop server ready at {url}")
        if config.host not in ("127.0.0.1", "localhost", "::1"):
            print("  listening beyond this machine: anyone who can reach it and has a token can use it.")
        if config.token:
            shown = config.token if generated else "<the token you set>"
            print("participants, in a notebook:")
            print(f'  import nbinpaint; nbinpaint.connect("{url}", token="{shown}")')
            print(f"or, set by the hub's admin: NBINPAINT_SERVER={url} NBINPAINT_TOKEN={shown}")
        if config.token and not config.users and config.hub is None:
            print(
                "  one shared token: the server cannot tell people apart, only their kernels' sessions. For a class, "
                "mint a token per participant (nbinpaint serve --tokens FILE --mint-tokens NAME...) or use --hub."
            )
        if config.hub is not None:
            print(f'hub users, in a notebook: import nbinpaint; nbinpaint.connect("{url}")  (no token to paste)')
        print(f"admin status: nbinpaint serve --status --url {url}\nCtrl-C stops the server.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("nbinpaint serve: stopping (a few seconds)", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second one must not leave Ray half shut down
            signal.signal(signum, signal.SIG_IGN)
        stop()
        print("nbinpaint serve: stopped; Ray and its processes are shut down.", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM's handler: stop as Ctrl-C does."""
    raise KeyboardInterrupt
