"""The `skiff` command."""

from __future__ import annotations

import argparse
import gc
import sys

from skiff.config import ClusterConfig


def _progress(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="skiff", description="A Kubernetes cluster for Services and networking.")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster (returns once it is ready)")
    up.add_argument("--name", default="skiff")
    up.add_argument("--nodes", type=int, default=None, help="how many nodes (default 3)")
    up.add_argument("--node-cidr", default=None)
    up.add_argument("--pod-cidr", default=None)
    up.add_argument("--service-cidr", default=None)
    up.add_argument("--lb-pool", default=None, help="LoadBalancer address range, e.g. 172.18.255.200-172.18.255.250")
    up.add_argument("--dns-upstream", action="append", default=None,
                    help="resolver for names outside the cluster domain (repeatable); default: the host's")
    up.add_argument("--wait", action="store_true",
                    help="also wait until cluster DNS and the Ingress controller are ready")
    up.add_argument("--node-grace", type=float, default=None,
                    help="seconds without a node heartbeat before the node is NotReady")
    down = sub.add_parser("down", help="stop a cluster and remove everything it created")
    down.add_argument("--name", default="skiff")
    kc = sub.add_parser("kubeconfig", help="print a cluster's kubeconfig")
    kc.add_argument("--name", default="skiff")
    sub.add_parser("list", help="list clusters")
    cp = sub.add_parser("controlplane", help=argparse.SUPPRESS)
    cp.add_argument("--state-dir", required=True)
    cp.add_argument("--listen", action="append", default=None)
    cm = sub.add_parser("controller-manager", help=argparse.SUPPRESS)
    cm.add_argument("--state-dir", required=True)
    na = sub.add_parser("node-agent", help=argparse.SUPPRESS)
    na.add_argument("--state-dir", required=True)
    na.add_argument("--node", type=int, required=True)
    args = p.parse_args(argv)

    from skiff import cluster

    try:
        if args.cmd == "up":
            cfg = ClusterConfig(name=args.name)
            given = {}
            for flag, attr, val in (("--nodes", "nodes", args.nodes), ("--node-cidr", "node_cidr", args.node_cidr),
                                    ("--pod-cidr", "pod_cidr", args.pod_cidr),
                                    ("--service-cidr", "service_cidr", args.service_cidr),
                                    ("--lb-pool", "lb_pool", args.lb_pool),
                                    ("--dns-upstream", "dns_upstreams", args.dns_upstream),
                                    ("--node-grace", "node_grace_seconds", args.node_grace)):
                if val is not None:
                    setattr(cfg, attr, val)
                    given[flag] = attr
            problems = cfg.problems()
            if problems:
                raise cluster.ClusterError("; ".join(problems))
            cluster.up(cfg, _progress, wait=args.wait, given=given)
        elif args.cmd == "down":
            if not cluster.down(args.name, _progress):
                print(f'No cluster "{args.name}" found; removed anything left of it.', file=sys.stderr)
        elif args.cmd == "list":
            names = cluster.list_clusters()
            if not names:
                print("No clusters found.", file=sys.stderr)
            for n in names:
                cfg = ClusterConfig.load(n)
                state = "running" if cluster.is_running(cfg) else "stopped"
                print(f"{n}\t{state}\t{cfg.server_url}")
        elif args.cmd == "kubeconfig":
            from skiff.cli import kubeconfig

            try:
                cfg = ClusterConfig.load(args.name)
            except FileNotFoundError:
                raise cluster.ClusterError(f'no cluster named "{args.name}"; start it with: skiff up '
                                           f'--name {args.name}') from None
            sys.stdout.write(kubeconfig.render(cfg))
        elif args.cmd == "controlplane":
            from skiff import controlplane

            _tune_gc_for_daemon()
            controlplane.main(args.state_dir, args.listen)
        elif args.cmd == "controller-manager":
            from skiff import controlplane

            _tune_gc_for_daemon()
            return controlplane.controller_manager_main(args.state_dir)
        elif args.cmd == "node-agent":
            from skiff.node import agent

            _tune_gc_for_daemon()
            agent.main(args.state_dir, args.node)
    except cluster.ClusterError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _tune_gc_for_daemon() -> None:
    """The daemons make many short-lived, acyclic dicts (JSON objects) per request, which reference
    counting frees. With the default thresholds the cycle collector still ran every 700 allocations
    and walked the whole heap every 70,000: about a tenth of the API server's CPU during a burst
    of writes. What start-up made is frozen (never scanned again) and collections are rarer;
    cyclic garbage is still collected."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


if __name__ == "__main__":
    sys.exit(main())
