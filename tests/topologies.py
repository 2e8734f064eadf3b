"""Real Redis Sentinel and Redis Cluster topologies for the tests, on free ports of 127.0.0.1.

`SentinelTopology(workdir).start()` runs a master, one replica of it and three sentinels
watching it as "rtmaster" (quorum 2); `ClusterTopology(workdir).start()` runs six
cluster-enabled nodes and joins them with `redis-cli --cluster create` (three masters, one
replica each). Both write their config files and logs under `workdir` (a fresh temporary
directory when none is given, removed by `stop()`), run nothing with persistence, bind to
127.0.0.1 only, and wait for readiness by polling the servers (PING, INFO, ROLE, SENTINEL,
CLUSTER INFO) within a bound: no fixed sleeps. `kill_master()` / `kill(node)` SIGKILL a node
and `wait_for_failover(...)` waits until the topology has promoted a replica and serves again.

The waits block (redis-py's synchronous client); an async test that keeps clients busy
meanwhile runs them in a thread: `await asyncio.to_thread(topology.wait_for_failover, old)`.

The processes die with the test run even if the test process is killed: each runs in a
session (process group) of its own, and a small watchdog process, holding the reading end of
a pipe whose writing end only this process has, SIGKILLs every group it was told of when
that pipe closes: at the end of the test process, however it ends. `stop()` (and an atexit
hook, for topologies a test forgot) end them first, in order.

Standard library and redis-py only, like tests/e2e/redis_server.py (no Django import).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
SERVICE = "rtmaster"  # the Sentinel service name
QUORUM = 2
READY_TIMEOUT = 30.0  # seconds: a bound on waiting for a topology to form, never a measurement
FAILOVER_TIMEOUT = 30.0  # seconds: a bound on waiting for a failover
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
CLUSTER_SLOTS = 16384
BIND_ATTEMPTS = 3  # a port found free may be taken before redis-server binds it: then try others

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A topology did not form, or did not fail over, in time (or one of its processes died)."""


def missing_binaries() -> str | None:
    """Why these topologies cannot run here (redis-server or redis-cli not found), or None."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (and, if it can be, not one handed out
    before by this process: a topology's ports must differ, though none listens yet)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            break
    _handed_out.add(port)
    return port


def wait_until(condition: Callable[[], T], timeout: float, what: str, context: Callable[[], str] = lambda: "") -> T:
    """Poll `condition` until it returns something true, and return that; a `RedisError` or `OSError`
    from it counts as "not yet". Past `timeout` seconds: `TopologyError` naming `what`, the last
    error and `context()`. A `TopologyError` from `condition` (a process died) ends the wait at once."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (OSError, redis.RedisError) as error:
            last_error = error
        if time.monotonic() > deadline:
            raise TopologyError(f"{what}: not within {timeout:g} s (last error: {last_error!r}){context()}")
        time.sleep(POLL_INTERVAL)


# --- the watchdog -------------------------------------------------------------------------------

# Reads "+<pgid>" / "-<pgid>" lines; when its stdin ends (the test process closed it or died),
# SIGKILLs the groups still registered. Its own session: a Ctrl-C or SIGHUP of the terminal does
# not reach it, and it ignores them anyway.
_WATCHDOG_CODE = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class _Watchdog:
    """The one watchdog process of this (test) process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0

    def _tell(self, line: str) -> None:
        with self._lock:
            if self._proc is None or self._owner != os.getpid() or self._proc.poll() is not None:
                # -I -S: no site (so no coverage or other .pth start-up hooks), no user paths.
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _WATCHDOG_CODE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    text=True,
                )
                self._owner = os.getpid()
            try:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # the watchdog died: stop() and atexit still apply
                pass

    def register(self, group: int) -> None:
        self._tell(f"+{group}")

    def forget(self, group: int) -> None:
        self._tell(f"-{group}")


_watchdog = _Watchdog()
_live_topologies: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_live_topologies() -> None:
    for topology in list(_live_topologies):
        try:
            topology.stop()
        except Exception:  # best effort at exit; the watchdog ends what is left
            pass


# --- one redis-server process -------------------------------------------------------------------


class RedisProcess:
    """One `redis-server` (or `redis-server --sentinel`) on 127.0.0.1, in a directory of its own.

    `settings(process)` returns its own config lines, which may depend on its ports: `port`, and
    `bus_port` (a second free port, for a cluster node's bus, when `cluster_bus`).
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        settings: Callable[[RedisProcess], Iterable[str]],
        *,
        sentinel: bool = False,
        cluster_bus: bool = False,
    ) -> None:
        self.workdir = Path(workdir) / name
        self.name = name
        self.sentinel = sentinel
        self.cluster_bus = cluster_bus
        self._settings = settings
        self.port = free_port()
        self.bus_port = free_port() if cluster_bus else None
        self.proc: subprocess.Popen | None = None
        self._registered = False  # with the watchdog
        self._client: redis.Redis | None = None

    def __repr__(self) -> str:
        return f"<RedisProcess {self.name} {HOST}:{self.port}>"

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def conf_path(self) -> Path:
        return self.workdir / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def console_path(self) -> Path:
        return self.workdir / "console.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of its log file, after anything it wrote to stdout or stderr (a config error)."""
        text = []
        for path in (self.console_path, self.log_path):
            try:
                text += path.read_text(errors="replace").splitlines()
            except OSError:
                pass
        return "\n".join(text[-lines:]) or "(nothing logged)"

    def client(self) -> redis.Redis:
        """A synchronous client of this process (short timeouts, no retries), kept for reuse."""
        if self._client is None:
            self._client = redis.Redis(
                host=HOST,
                port=self.port,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        return self._client

    def _write_config(self) -> None:
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            "daemonize no",
            f'dir "{self.workdir}"',
            f'logfile "{self.log_path}"',
        ]
        if not self.sentinel:
            lines += ['save ""', "appendonly no", "shutdown-on-sigterm nosave now"]
        lines += list(self._settings(self))
        self.conf_path.write_text("\n".join(lines) + "\n")

    def launch(self) -> RedisProcess:
        """Start the process (it is not ready yet: see `start`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        command = [shutil.which("redis-server") or "redis-server", str(self.conf_path)]
        if self.sentinel:
            command.append("--sentinel")
        with self.console_path.open("ab") as console:  # what it says before its log file is open
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, for the watchdog; no terminal signals
            )
        _watchdog.register(self.proc.pid)
        self._registered = True
        return self

    def start(self, timeout: float = READY_TIMEOUT) -> RedisProcess:
        """Start it afresh (its directory emptied: no cluster or sentinel state of an earlier run) and
        wait until it answers PING; when another process took its port meanwhile, try new ports."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        for attempt in range(BIND_ATTEMPTS):
            self.launch()
            try:
                wait_until(self._pings, timeout, f"{self.name} answering PING", self._context)
                return self
            except TopologyError:
                in_use = "Address already in use" in self.log_tail(5)
                self.stop()
                if not in_use or attempt == BIND_ATTEMPTS - 1:
                    raise
                self.port = free_port()
                self.bus_port = free_port() if self.cluster_bus else None
                self.log_path.unlink(missing_ok=True)
                self.console_path.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _pings(self) -> bool:
        self.check_alive()
        return self.client().ping()

    def check_alive(self) -> None:
        if not self.alive:
            code = None if self.proc is None else self.proc.returncode
            raise TopologyError(f"{self.name} (port {self.port}) is not running (exit {code}){self._context()}")

    def _context(self) -> str:
        return f"\n--- {self.log_path} (end) ---\n{self.log_tail()}"

    def _reaped(self) -> None:
        if self._registered:
            _watchdog.forget(self.proc.pid)
            self._registered = False
        if self._client is not None:
            self._client.close()
            self._client = None

    def pause(self) -> None:
        """SIGSTOP: the process holds its data and its connections but answers nothing (a stalled replica)."""
        if self.alive:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.alive:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: it dies at once, without a word to its peers (a crash, or a machine gone)."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            self._reaped()

    def terminate(self) -> None:
        """SIGTERM, without waiting (see `stop`)."""
        if self.alive:
            self.proc.terminate()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reaped()


def _stop_all(processes: Iterable[RedisProcess]) -> None:
    """SIGTERM them all at once, then wait for each (SIGKILL past the bound)."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        process.stop(max(0.1, deadline - time.monotonic()))


def _info_fields(text_or_dict) -> dict:
    """`CLUSTER INFO` as a dict (redis-py parses it already; raw text is parsed here)."""
    if isinstance(text_or_dict, dict):
        return {key: str(value) for key, value in text_or_dict.items()}
    return dict(line.split(":", 1) for line in str(text_or_dict).splitlines() if ":" in line)


# --- Sentinel -----------------------------------------------------------------------------------


class SentinelTopology:
    """A master, one replica of it and three sentinels monitoring it as `SERVICE` (quorum 2)."""

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self._own_workdir = workdir is None  # a temporary directory of its own, removed by stop()
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="rt-sentinel-"))
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers: list[RedisProcess] = []  # the data nodes: the first master, then its replica
        self.sentinels: list[RedisProcess] = []
        self._stopped = False

    # addresses

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        """`redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/rtmaster/0`."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master_address(self) -> tuple[str, int]:
        """The master's address as the running sentinels report it now (the most common answer)."""
        answers = self._reported_masters()
        if not answers:
            raise TopologyError(f"no sentinel reports a master for {SERVICE!r}")
        return Counter(answers.values()).most_common(1)[0][0]

    def server_at(self, address: tuple[str, int]) -> RedisProcess:
        """The data node (master or replica) listening on `address`."""
        for server in self.servers:
            if server.address == tuple(address):
                return server
        raise KeyError(address)

    # life cycle

    def start(self, timeout: float = READY_TIMEOUT) -> SentinelTopology:
        """Start everything and wait until the replica is in sync and every sentinel knows the
        master, the replica and the two other sentinels. On failure: everything stopped, then raise."""
        _live_topologies.add(self)
        self._stopped = False
        self.servers, self.sentinels = [], []
        try:
            data = ["repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
            master = RedisProcess(self.workdir, "master", lambda _: data)
            self.servers.append(master)
            master.start(timeout)
            replica = RedisProcess(self.workdir, "replica", lambda _: [*data, f"replicaof {HOST} {master.port}"])
            self.servers.append(replica)
            replica.start(timeout)
            # The replica in sync first: a sentinel's first INFO of the master then lists it.
            wait_until(self._replica_in_sync, timeout, "the replica in sync with the master", self._context)
            for n in (1, 2, 3):
                sentinel = RedisProcess(self.workdir, f"sentinel-{n}", self._sentinel_settings, sentinel=True)
                self.sentinels.append(sentinel)
                sentinel.start(timeout)
            wait_until(self._sentinels_agree, timeout, "the sentinels knowing the master and each other", self._context)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel_settings(self, sentinel: RedisProcess) -> list[str]:
        master = self.servers[0]
        return [
            "sentinel resolve-hostnames no",
            f"sentinel monitor {SERVICE} {HOST} {master.port} {QUORUM}",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]

    def _replica_in_sync(self) -> bool:
        master, replica = self.servers
        master.check_alive()
        replica.check_alive()
        role = replica.client().execute_command("ROLE")
        # ["slave", master_ip, master_port, state, offset]
        in_sync = role[0] == "slave" and int(role[2]) == master.port and role[3] == "connected"
        listed = master.client().info("replication").get("connected_slaves", 0) == 1
        return in_sync and listed

    def _sentinels_agree(self) -> bool:
        master, replica = self.servers
        for sentinel in self.sentinels:
            sentinel.check_alive()
            client = sentinel.client()
            state = client.sentinel_master(SERVICE)
            if (state["ip"], int(state["port"])) != master.address or not state["is_master"]:
                return False
            if state["is_sdown"] or state["is_odown"] or state["num-other-sentinels"] != len(self.sentinels) - 1:
                return False
            replicas = client.sentinel_slaves(SERVICE)
            known = [
                r
                for r in replicas
                if (r["ip"], int(r["port"])) == replica.address
                and not (r["is_sdown"] or r["is_odown"] or r["is_disconnected"])
                and r.get("master-link-status") == "ok"
            ]
            if not known:
                return False
        return True

    def _reported_masters(self) -> dict[str, tuple[str, int]]:
        answers = {}
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            try:
                reply = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
            except (OSError, redis.RedisError):
                continue
            if reply:
                answers[sentinel.name] = (reply[0], int(reply[1]))
        return answers

    def replica(self) -> RedisProcess:
        """The data node that is not the master now."""
        master = self.master_address()
        return next(server for server in self.servers if server.address != master)

    def kill_master(self) -> tuple[str, int]:
        """SIGKILL the current master (as the sentinels report it); returns its address."""
        address = self.master_address()
        self.server_at(address).kill()
        return address

    def wait_for_failover(self, old_address: tuple[str, int], timeout: float = FAILOVER_TIMEOUT) -> tuple[str, int]:
        """Wait until every running sentinel reports one master other than `old_address`, and that
        master answers ROLE as a master; returns its address."""
        old_address = (old_address[0], int(old_address[1]))

        def promoted() -> tuple[str, int] | None:
            running = [s for s in self.sentinels if s.alive]
            answers = self._reported_masters()
            if len(answers) != len(running) or len(set(answers.values())) != 1:
                return None
            (address,) = set(answers.values())
            if address == old_address:
                return None
            role = self.server_at(address).client().execute_command("ROLE")
            return address if role[0] == "master" else None

        return wait_until(promoted, timeout, f"a failover away from {old_address}", self._context)

    def _context(self) -> str:
        parts = [
            f"\n--- {p.name} ({p.port}, {'running' if p.alive else 'stopped'}) ---\n{p.log_tail(8)}"
            for p in self.servers + self.sentinels
        ]
        return "".join(parts)

    def stop(self) -> None:
        """Stop every process (the sentinels first, so none fails over on the way). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _stop_all(self.sentinels)
            _stop_all(self.servers)
        finally:
            _live_topologies.discard(self)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


# --- Cluster ------------------------------------------------------------------------------------


class ClusterTopology:
    """Six cluster-enabled nodes joined by `redis-cli --cluster create` (three masters, three replicas)."""

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        self._own_workdir = workdir is None  # a temporary directory of its own, removed by stop()
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="rt-cluster-"))
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        self._killed: dict[int, list[int]] = {}  # a killed node's port -> its replicas' ports
        self._stopped = False

    @property
    def url(self) -> str:
        """`redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` (the first three nodes)."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes[:3])

    @property
    def startup_addresses(self) -> list[tuple[str, int]]:
        """The addresses `url` names."""
        return [node.address for node in self.nodes[:3]]

    def node_at(self, address: tuple[str, int] | int) -> RedisProcess:
        port = address if isinstance(address, int) else int(address[1])
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(address)

    def _node_settings(self, node: RedisProcess) -> list[str]:
        return [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"cluster-port {node.bus_port}",  # port + 10000 may be past 65535 for a free port
            "cluster-replica-validity-factor 0",  # a replica always may take over (it is in sync here)
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
        ]

    def start(self, timeout: float = READY_TIMEOUT) -> ClusterTopology:
        """Start the nodes, create the cluster, and wait until every node sees it whole and every
        replica is in sync. On failure: everything stopped, then raise."""
        _live_topologies.add(self)
        self._stopped = False
        self._killed = {}
        try:
            count = self.masters * (1 + self.replicas_per_master)
            self.nodes = [
                RedisProcess(self.workdir, f"node-{n}", self._node_settings, cluster_bus=True)
                for n in range(1, count + 1)
            ]
            for node in self.nodes:
                node.start(timeout)
            self._create(timeout)
            wait_until(
                self._formed, timeout, "the cluster formed (state ok, all slots, replicas in sync)", self._context
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, timeout: float) -> None:
        log = self.workdir / "cluster-create.log"
        command = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create"]
        command += [f"{HOST}:{node.port}" for node in self.nodes]
        command += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        with log.open("w") as out:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,
                check=False,
            )
        if done.returncode != 0:
            raise TopologyError(f"redis-cli --cluster create exited with {done.returncode}:\n{log.read_text()}")

    def _formed(self) -> bool:
        views = set()
        for node in self.nodes:
            node.check_alive()
            info = _info_fields(node.client().cluster("INFO"))
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(CLUSTER_SLOTS):
                return False
            if info.get("cluster_known_nodes") != str(len(self.nodes)) or info.get("cluster_size") != str(self.masters):
                return False
            role = node.client().execute_command("ROLE")
            if role[0] == "slave" and role[3] != "connected":
                return False
            roles = self._roles(node)
            views.add(tuple(sorted(roles.items(), key=str)))
        # Every node sees the same replica of the same master (what `kill` and a failover rely on).
        if len(views) != 1:
            return False
        replicas = Counter(master for master in roles.values() if master is not None)
        masters = [port for port, master in roles.items() if master is None]
        return len(masters) == self.masters and all(replicas[m] == self.replicas_per_master for m in masters)

    def _roles(self, via: RedisProcess) -> dict[int, int | None]:
        """{port: the port of its master, or None for a master}, as `via` sees the cluster."""
        rows = self._cluster_nodes(via)
        ports = {row["id"]: row["port"] for row in rows}
        return {row["port"]: ports.get(row["master"]) for row in rows}

    def _survivor(self) -> RedisProcess:
        for node in self.nodes:
            if node.alive:
                return node
        raise TopologyError("no cluster node is running")

    def _cluster_nodes(self, via: RedisProcess) -> list[dict]:
        """`CLUSTER NODES` as seen by `via`: dicts of id, port, flags, master (an id, or "-")."""
        rows = []
        for address, node in via.client().cluster("NODES").items():  # redis-py parses it: {"ip:port": {...}}
            rows.append(
                {
                    "id": node["node_id"],
                    "port": int(address.rsplit(":", 1)[1]),
                    "flags": set(node["flags"].split(",")),
                    "master": node["master_id"],
                }
            )
        return rows

    def _slot_owners(self, via: RedisProcess) -> dict[int, int]:
        """slot -> port of the master owning it (as `via` sees it), for the covered slots."""
        owners = {}
        for start, end, master, *_ in via.client().execute_command("CLUSTER SLOTS"):
            for slot in range(int(start), int(end) + 1):
                owners[slot] = int(master[1])
        return owners

    def master_for_key(self, key: str | bytes) -> RedisProcess:
        """The node owning `key`'s hash slot now, as a running node sees it."""
        via = self._survivor()
        slot = int(via.client().execute_command("CLUSTER KEYSLOT", key))
        for start, end, master, *_ in via.client().execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return self.node_at(int(master[1]))
        raise TopologyError(f"slot {slot} of {key!r} is not covered")

    def replicas_of(self, node: RedisProcess) -> list[RedisProcess]:
        """The nodes replicating `node` now: its own ROLE when it runs, else as another node sees it."""
        if node.alive:
            role = node.client().execute_command("ROLE")  # ["master", offset, [[ip, port, offset], ...]]
            return [self.node_at(int(replica[1])) for replica in role[2]] if role[0] == "master" else []
        roles = self._roles(self._survivor())
        return [self.node_at(port) for port, master in roles.items() if master == node.port]

    def kill(self, node: RedisProcess, replicas: list[RedisProcess] | None = None) -> None:
        """SIGKILL `node` (its replicas, now or as given, are noted for `wait_for_failover`)."""
        replicas = self.replicas_of(node) if replicas is None else replicas
        self._killed[node.port] = [replica.port for replica in replicas]
        node.kill()

    def wait_for_failover(self, killed_node: RedisProcess, timeout: float = FAILOVER_TIMEOUT) -> RedisProcess:
        """Wait until a replica of `killed_node` (a master killed with `kill`) answers ROLE as a master
        and every running node reports cluster_state:ok with all slots covered and none of them on the
        killed node; returns the promoted node."""
        if killed_node.port not in self._killed:
            raise ValueError(f"{killed_node} was not killed with kill()")
        replica_ports = self._killed[killed_node.port]
        if not replica_ports:
            raise ValueError(f"{killed_node} had no replica to promote")

        def promoted() -> RedisProcess | None:
            new = [
                self.node_at(port)
                for port in replica_ports
                if self.node_at(port).alive and self.node_at(port).client().execute_command("ROLE")[0] == "master"
            ]
            if not new:
                return None
            for node in self.nodes:
                if not node.alive:
                    continue
                info = _info_fields(node.client().cluster("INFO"))
                if info.get("cluster_state") != "ok":
                    return None
                owners = self._slot_owners(node)
                if len(owners) != CLUSTER_SLOTS or killed_node.port in owners.values():
                    return None
            return new[0]

        return wait_until(promoted, timeout, f"a failover away from {killed_node}", self._context)

    def _context(self) -> str:
        parts = [
            f"\n--- {n.name} ({n.port}, {'running' if n.alive else 'stopped'}) ---\n{n.log_tail(8)}" for n in self.nodes
        ]
        return "".join(parts)

    def stop(self) -> None:
        """Stop every node. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _stop_all(self.nodes)
        finally:
            _live_topologies.discard(self)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
