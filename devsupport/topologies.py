"""Real Redis topologies on 127.0.0.1: a Redis Cluster made with `redis-cli --cluster
create`, a Sentinel group, and a TLS server with a throwaway CA. Every process is a
LocalRedisServer, stopped by `stop()` even when start-up fails half way; nothing listens
beyond loopback. Used by the topology tests and the fault-injection tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .net import free_port
from .net import wait_until as _wait_until
from .redis_binary import find_tool
from .redis_server import LocalRedisServer, search_module_args, sentinel_launch

HOST = "127.0.0.1"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll until truthy; servers in transition refuse or redirect for a moment."""
    _wait_until(predicate, timeout, what, interval, retry_on=(redis.RedisError,))


def redis_cli(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run([str(find_tool("redis-cli")), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"redis-cli {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def admin(port: int, **kwargs) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_timeout=10, **kwargs)


# ------------------------------------------------------------------ processes


@dataclass
class Topology:
    """Servers started together and stopped together."""

    root: Path
    servers: list[LocalRedisServer] = field(default_factory=list)

    def start_server(
        self, name: str, extra_args: Sequence[str] = (), binary: Path | None = None, port: int | None = None
    ) -> LocalRedisServer:
        server = LocalRedisServer(
            port=port, binary=binary, extra_args=extra_args, workdir=self.root / name, log=lambda _: None
        )
        self.servers.append(server)  # before start: a half-started server is still stopped
        server.start()
        return server

    def server(self, port: int) -> LocalRedisServer:
        return next(server for server in self.servers if server.port == port)

    def stop(self) -> None:
        errors = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(exc)
        self.servers.clear()
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ cluster


class Cluster(Topology):
    """`primaries` primaries with `replicas` replica each, made by `redis-cli --cluster create`."""

    def __init__(
        self, root: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000, search: bool = False
    ) -> None:
        super().__init__(root)
        self.search = search  # every node loads the Query Engine (redis_server.search_module_args)
        self.primaries_count = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms

    def _node_args(self) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # Explicit bus port: the default (port + 10000) may be out of range or taken.
            "--cluster-port",
            str(free_port()),
            *(search_module_args() if self.search else ()),
        ]

    def start(self) -> Cluster:
        try:
            for i in range(self.primaries_count * (1 + self.replicas)):
                self.start_server(f"node{i}", self._node_args())
            redis_cli(
                "--cluster",
                "create",
                *(f"{HOST}:{s.port}" for s in self.servers),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def connection_string(self) -> str:
        """Feast's format with every node as a startup node."""
        return ",".join(f"{HOST}:{p}" for p in self.ports)

    def nodes(self) -> list[dict[str, object]]:
        """CLUSTER NODES as seen by the first node that answers."""
        for port in self.ports:
            try:
                text = admin(port).execute_command("CLUSTER", "NODES")
            except redis.ConnectionError:
                continue
            if isinstance(text, bytes):
                text = text.decode()
            out = []
            for line in text.strip().splitlines():
                parts = line.split()
                out.append(
                    {
                        "id": parts[0],
                        "port": int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                        "flags": parts[2].split(","),
                        "master": parts[3],
                        "slots": parts[8:],
                    }
                )
            return out
        raise AssertionError("no cluster node answers")

    def primary_ports(self) -> list[int]:
        return sorted(n["port"] for n in self.nodes() if "master" in n["flags"] and n["slots"])

    def node_id(self, port: int) -> str:
        return next(n["id"] for n in self.nodes() if n["port"] == port)

    def replica_of(self, primary_port: int) -> int:
        primary_id = self.node_id(primary_port)
        return next(n["port"] for n in self.nodes() if n["master"] == primary_id)

    def port_for_key(self, key: bytes) -> int:
        return self.port_for_slot(admin(self.ports[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def port_for_slot(self, slot: int) -> int:
        for entry in admin(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return int(entry[2][1])
        raise AssertionError(f"slot {slot} is not covered")

    def move_slot(self, slot: int, target: int) -> int:
        """Move one slot and its keys to the primary at `target`, as `redis-cli --cluster
        reshard` does slot by slot; returns how many keys moved."""
        source = self.port_for_slot(slot)
        if source == target:
            return 0
        source_id, target_id = self.node_id(source), self.node_id(target)
        admin(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        admin(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := admin(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            admin(source).execute_command("MIGRATE", HOST, target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for port in dict.fromkeys([target, source, *self.primary_ports()]):
            admin(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    def add_primary(self) -> int:
        """A new empty primary (no slots yet) joined to the cluster; returns its port."""
        server = self.start_server(f"node{len(self.servers)}", self._node_args())
        redis_cli("--cluster", "add-node", f"{HOST}:{server.port}", f"{HOST}:{self.primary_ports()[0]}")
        known = f":{server.port}@".encode()
        wait_until(
            lambda: (
                all(known in admin(port).execute_command("CLUSTER", "NODES") for port in self.ports)
                and b"cluster_state:ok" in admin(server.port).execute_command("CLUSTER", "INFO")
            ),
            30,
            "every node to know the new primary, and it the cluster",
        )
        return server.port

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every node says cluster_state:ok, agrees on the slot map, lists every replica in
        CLUSTER SLOTS (what a client learns its replicas from: a replica shows there a moment
        after it is in sync, and a client started before then reads from primaries only), and
        each replica is in sync."""

        def healthy() -> bool:
            views = set()
            for port in self.ports:
                client = admin(port)
                info = client.execute_command("CLUSTER", "INFO")
                if b"cluster_state:ok" not in info:
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                if any(len(entry) - 2 < 1 + self.replicas for entry in slots):
                    return False
                views.add(tuple(sorted((s[0], s[1], int(s[2][1])) for s in slots)))
                replication = client.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            return len(views) == 1

        wait_until(healthy, timeout, "a healthy, consistent cluster")

    def for_each_primary(self, fn: Callable[[redis.Redis], object]) -> dict[int, object]:
        return {port: fn(admin(port)) for port in self.primary_ports()}

    def failover(self, replica_port: int, timeout: float = 20) -> None:
        """CLUSTER FAILOVER on a replica (the coordinated kind: no acknowledged write is lost)."""
        assert admin(replica_port).execute_command("CLUSTER", "FAILOVER") in (b"OK", "OK", True)
        wait_until(
            lambda: admin(replica_port).info("replication")["role"] == "master",
            timeout,
            f"replica {replica_port} to become a primary",
        )
        self.wait_healthy(timeout)


# ------------------------------------------------------------------ sentinel


class SentinelGroup(Topology):
    """One primary, one replica, `sentinels` sentinels monitoring them as `master_name`."""

    def __init__(self, root: Path, sentinels: int = 3, master_name: str = "mymaster", search: bool = False) -> None:
        super().__init__(root)
        self.search = search  # the data nodes load the Query Engine (redis_server.search_module_args)
        self.sentinel_count = sentinels
        self.master_name = master_name
        self.sentinel_ports: list[int] = []

    def start(self) -> SentinelGroup:
        try:
            module = search_module_args() if self.search else []
            primary = self.start_server("primary", module)
            self.start_server("replica", ["--replicaof", HOST, str(primary.port), *module])
            quorum = self.sentinel_count // 2 + 1
            sentinel_binary, sentinel_flag = sentinel_launch()
            for i in range(self.sentinel_count):
                sentinel = self.start_server(
                    f"sentinel{i}",
                    [
                        *sentinel_flag,
                        "--sentinel",
                        "monitor",
                        self.master_name,
                        HOST,
                        str(primary.port),
                        str(quorum),
                        "--sentinel",
                        "down-after-milliseconds",
                        self.master_name,
                        "2000",
                        "--sentinel",
                        "failover-timeout",
                        self.master_name,
                        "10000",
                    ],
                    binary=sentinel_binary,
                )
                self.sentinel_ports.append(sentinel.port)
            wait_until(self._ready, 30, "the replica in sync and every sentinel seeing it")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        """The replica is in sync and every sentinel knows it (a failover needs a candidate)."""
        _primary, replica = self.data_ports()
        if admin(replica).info("replication").get("master_link_status") != "up":
            return False
        for port in self.sentinel_ports:
            replicas = admin(port).execute_command("SENTINEL", "REPLICAS", self.master_name)
            if len(replicas) != 1:
                return False
        return True

    @property
    def connection_string(self) -> str:
        return ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)

    def data_ports(self) -> list[int]:
        return [s.port for s in self.servers[:2]]

    def primary_port(self) -> int:
        """The primary as the first sentinel reports it."""
        _host, port = admin(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return int(port)

    def failover(self, timeout: float = 30) -> int:
        """SENTINEL FAILOVER; returns the new primary's port once every sentinel reports it
        and it accepts writes."""
        old = self.primary_port()
        admin(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", self.master_name)

        def switched() -> bool:
            ports = set()
            for port in self.sentinel_ports:
                _, p = admin(port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                ports.add(int(p))
            return len(ports) == 1 and old not in ports and admin(ports.pop()).info("replication")["role"] == "master"

        wait_until(switched, timeout, "every sentinel to report the new primary")
        return self.primary_port()


# ------------------------------------------------------------------ TLS


@dataclass
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A throwaway CA, a server cert for 127.0.0.1/localhost and a client cert, via the
    openssl CLI (EC P-256 keys: quick to make)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/CN=feast-hexpire-test-ca",
        "-out",
        "ca.crt",
    )
    for name, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{name}.ext").write_text(extensions)
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
        )
    return Certificates(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


def tls_server_args(certs: Certificates, tls_port: int, require_client_cert: bool = True) -> list[str]:
    return [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(certs.server_cert),
        "--tls-key-file",
        str(certs.server_key),
        "--tls-ca-cert-file",
        str(certs.ca),
        "--tls-auth-clients",
        "yes" if require_client_cert else "no",
    ]
