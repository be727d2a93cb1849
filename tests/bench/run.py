#!/usr/bin/python3
"""leafmail benchmark: receive, flush, injection, latency, memory and scale, each figure the
median of several runs with min-max, and the same load against a sink that stores nothing
(the ceiling of the wire on this machine). Load generator and sink: Postfix's smtp-source and
smtp-sink, unpacked from Debian's postfix package without installing it (no second MTA runs).
Everything on 127.0.0.1 with ports picked at run time. Prints a Markdown table.

Usage: run.py --bin-dir BUILD/src --fill BUILD/tests/bench/leafmail-bench-fill
              --commit BUILD/tests/bench/leafmail-bench-commit [--runs 3]
"""

import argparse
import glob
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# (section, figure, leafmail, wire ceiling or None, unit, per-file ceiling or None, flush floor or None)
RESULTS = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- tools


def postfix_tools(cache):
    """smtp-source and smtp-sink from Debian's postfix package, unpacked into cache."""
    root = os.path.join(cache, "postfix-root")
    source = os.path.join(root, "usr/sbin/smtp-source")
    if not os.path.exists(source):
        os.makedirs(cache, exist_ok=True)
        if not glob.glob(os.path.join(cache, "postfix_*.deb")):
            cmd = ["apt-get", "download", "postfix"]
            if subprocess.call(cmd, cwd=cache) != 0:
                subprocess.check_call(["apt-get", "update", "-q"])
                subprocess.check_call(cmd, cwd=cache)
        deb = glob.glob(os.path.join(cache, "postfix_*.deb"))[0]
        subprocess.check_call(["dpkg-deb", "-x", deb, root])
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "usr/lib/postfix"))
    return source, os.path.join(root, "usr/sbin/smtp-sink"), env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def vm_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # KiB
    return 0


class Leafmaild:
    def __init__(self, bins, spool, extra=()):
        self.conf = os.path.join(os.path.dirname(spool), "bench.conf")
        with open(self.conf, "w") as f:
            f.write("")
        cmd = [os.path.join(bins, "leafmaild"), "--config", self.conf, "--spool", spool, "--log", "stderr",
               "--listen", "127.0.0.1:0", "--max-connections", "5000", "--hostname", "bench.leafmail"] + list(extra)
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     preexec_fn=raise_fd_limit)
        self.lines = []
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            line = self.proc.stderr.readline().decode()
            m = re.search(r"event=listening address=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            raise RuntimeError("leafmaild did not start")
        # Keep draining the log so the daemon never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sink:
    """smtp-sink: accepts everything, stores nothing."""

    def __init__(self, sink_bin, env, extra=()):
        self.port = free_port()
        # smtp-sink refuses to run as root without a user to become.
        as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen([sink_bin] + as_user + list(extra) + [f"127.0.0.1:{self.port}", "1024"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=raise_fd_limit)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def count_entries(spool, area="queue"):
    d = os.path.join(spool, area)
    return sum(1 for n in os.listdir(d) if not n.endswith(".env")) if os.path.isdir(d) else 0


def summarize(values):
    return statistics.median(values), min(values), max(values)


def record(section, figure, ours, ceiling, unit, disk=None, flush=None):
    RESULTS.append((section, figure, ours, ceiling, unit, disk, flush))
    m = summarize(ours)
    text = f"{section} / {figure}: {m[0]:.1f} {unit} ({m[1]:.1f}-{m[2]:.1f})"
    if ceiling:
        c = summarize(ceiling)
        text += f"; ceiling {c[0]:.1f} ({c[1]:.1f}-{c[2]:.1f}), ratio {m[0] / c[0]:.2f}"
    if disk:
        d = summarize(disk)
        text += f"; per-file {d[0]:.1f} ({d[1]:.1f}-{d[2]:.1f}), ratio {m[0] / d[0]:.2f}"
    if flush:
        f = summarize(flush)
        text += f"; data-only flush {f[0]:.1f} ({f[1]:.1f}-{f[2]:.1f}), ratio {m[0] / f[0]:.2f}"
    log(text)


def settle_on_disk():
    """Writes every freshly filled entry out before a flush is timed. Queued mail has long
    been on disk when a flush runs; an entry still in the page cache under delayed allocation
    has no blocks yet, so deleting it skips what deleting a real one costs (on a filesystem
    mounted with 'discard', a synchronous discard per file). A daemon run in between (the
    scale section) writes them out anyway, with its journal checkpoint's syncfs: without this,
    a flush after it looked two to three times slower than one straight after the fill."""
    os.sync()


def disk_commit_rate(args, work, count, threads, size, mode="file"):
    """Durable commits per second the disk itself gives (leafmail-bench-commit): one new file
    each (mode "file", the per-file ceiling) or one data-only fdatasync of an overwrite each
    (mode "data-only", the flush floor a journal without group commit would pay)."""
    directory = tempfile.mkdtemp(prefix="commit-", dir=work)
    try:
        out = subprocess.check_output([args.commit, directory, str(count), str(threads), str(size), mode],
                                      timeout=600)
        return float(out)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------- scenarios


def smtp_source_rate(source, env, port, sessions, messages, size):
    """Messages per second smtp-source pushes through; one message per connection."""
    start = time.monotonic()
    subprocess.check_call([source, "-s", str(sessions), "-m", str(messages), "-l", str(size),
                           "-f", "bench@example.org", "-t", "sink@example.net", "-M", "bench.client",
                           f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL, timeout=600)
    return messages / (time.monotonic() - start)


def bench_receive(args, tools, work):
    source, sink_bin, env = tools
    for size, sessions in [(1024, 1), (1024, 10), (1024, 50), (100 * 1024, 10)]:
        ours, ceiling, disk, flush = [], [], [], []
        for run in range(args.runs):
            disk.append(disk_commit_rate(args, work, args.messages, sessions, size))
            flush.append(disk_commit_rate(args, work, args.messages, sessions, size, "data-only"))
            spool = os.path.join(work, f"recv-{size}-{sessions}-{run}", "spool")
            os.makedirs(os.path.dirname(spool))
            daemon = Leafmaild(args.bin_dir, spool)
            try:
                ours.append(smtp_source_rate(source, env, daemon.port, sessions, args.messages, size))
            finally:
                daemon.stop()
            stored = count_entries(spool)
            if stored != args.messages:
                raise RuntimeError(f"spool holds {stored} entries, expected {args.messages}")
            shutil.rmtree(os.path.dirname(spool))
            sink = Sink(sink_bin, env)
            try:
                ceiling.append(smtp_source_rate(source, env, sink.port, sessions, args.messages, size))
            finally:
                sink.stop()
        record("receive", f"{size // 1024} KiB, {sessions} connection(s)", ours, ceiling, "msg/s", disk, flush)


def flush_command(args, spool, port, conf):
    return [os.path.join(args.bin_dir, "leafmail-flush"), "--config", conf, "--spool", spool, "--log", "stderr",
            "--smarthost", f"127.0.0.1:{port}", "--tls", "none", "--hostname", "bench.leafmail"]


def timed_flush(args, tools, spool, conf):
    """(messages per second, peak RSS KiB) of one leafmail-flush run into smtp-sink."""
    _, sink_bin, env = tools
    pending = count_entries(spool)
    sink = Sink(sink_bin, env)
    try:
        start = time.monotonic()
        proc = subprocess.Popen(flush_command(args, spool, sink.port, conf), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # Peak RSS of the flush itself: VmHWM of its own address space, sampled until it exits.
        # (ru_maxrss would carry over the high-water mark of this Python process across exec.)
        peak = [0]

        def sample():
            while proc.poll() is None:
                try:
                    peak[0] = max(peak[0], vm_status(proc.pid, "VmHWM"))
                except (OSError, ValueError):
                    pass
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        stderr = proc.stderr.read()
        proc.wait()
        sampler.join()
        elapsed = time.monotonic() - start
    finally:
        sink.stop()
    if proc.returncode != 0 or count_entries(spool) != 0:
        raise RuntimeError(f"flush exit {proc.returncode}, {count_entries(spool)} left: {stderr[-2000:]!r}")
    return pending / elapsed, peak[0]


def bench_flush(args, tools, work):
    for size in (1024, 100 * 1024):
        rates = []
        for run in range(args.runs):
            base = os.path.join(work, f"flush-{size}-{run}")
            spool = os.path.join(base, "spool")
            os.makedirs(base)
            conf = os.path.join(base, "bench.conf")
            open(conf, "w").close()
            subprocess.check_call([args.fill, spool, str(args.messages), str(size), "sink@example.net"])
            settle_on_disk()
            rates.append(timed_flush(args, tools, spool, conf)[0])
            shutil.rmtree(base)
        record("flush", f"{size // 1024} KiB into smtp-sink, {args.messages} messages", rates, None, "msg/s")


def message_1k(i):
    body = "".join(f"line {n:04d} " + "x" * 66 + "\n" for n in range(12))
    return f"From: bench@example.org\nTo: sink@example.net\nSubject: bench {i}\n\n{body}"


def shell_loop_rate(command, parallel, count, message_file):
    """Messages per second for `parallel` shell loops each running `command < message_file`,
    as the anchors were measured (process start included in every message)."""
    per_loop = count // parallel
    script = (f'i=0; while [ $i -lt {per_loop} ]; do {command} < "{message_file}" > /dev/null || exit 1; '
              f'i=$((i+1)); done')
    start = time.monotonic()
    loops = [subprocess.Popen(["sh", "-c", script]) for _ in range(parallel)]
    codes = [loop.wait(timeout=900) for loop in loops]
    elapsed = time.monotonic() - start
    if any(codes):
        raise RuntimeError(f"a loop of '{command}' failed: {codes}")
    return per_loop * parallel / elapsed


def bench_injection(args, work):
    """sendmail -t in shell loops, with leafmaild running (the injector hands each message to
    its journal) and without it (each message committed as its own file by the injector)."""
    sendmail = os.path.join(args.bin_dir, "leafmail-sendmail")
    for parallel in (1, 10):
        for with_daemon in (True, False):
            ours, ceiling, disk, flush = [], [], [], []
            for run in range(args.runs):
                base = os.path.join(work, f"inject-{parallel}-{run}")
                spool = os.path.join(base, "spool")
                os.makedirs(base)
                # The injector never creates a spool (it is leafmaild's, or --setup-spool's).
                daemon = Leafmaild(args.bin_dir, spool)
                if not with_daemon:
                    daemon.stop()
                try:
                    conf = os.path.join(base, "leafmail.conf")
                    with open(conf, "w") as f:
                        f.write(f"spool = {spool}\nhostname = bench.leafmail\n")
                    message = os.path.join(base, "message.txt")
                    with open(message, "w") as f:
                        f.write(message_1k(run))
                    disk.append(disk_commit_rate(args, work, args.inject, parallel, 1024))
                    flush.append(disk_commit_rate(args, work, args.inject, parallel, 1024, "data-only"))
                    ours.append(shell_loop_rate(f'"{sendmail}" -C "{conf}" -t', parallel, args.inject, message))
                finally:
                    if with_daemon:
                        daemon.stop()
                if count_entries(spool) != args.inject // parallel * parallel:
                    raise RuntimeError(f"sendmail spooled {count_entries(spool)} of {args.inject}")
                ceiling.append(shell_loop_rate("cat", parallel, args.inject, message))
                shutil.rmtree(base)
            how = "leafmaild running" if with_daemon else "no leafmaild"
            record("injection", f"sendmail -t 1 KiB, {parallel} in parallel, {how}", ours, ceiling, "msg/s",
                   disk, flush)
        # What bounds the injector before it touches the spool: its own start-up (exec, the
        # loader, static initialisers, the command line), against the same cat loop.
        start_up, ceiling = [], []
        message = os.path.join(work, "start-up-message.txt")
        with open(message, "w") as f:
            f.write(message_1k(0))
        for run in range(args.runs):
            start_up.append(shell_loop_rate(f'"{sendmail}" --version', parallel, args.inject, message))
            ceiling.append(shell_loop_rate("cat", parallel, args.inject, message))
        os.unlink(message)
        record("injection", f"sendmail --version (start-up alone), {parallel} in parallel", start_up, ceiling,
               "runs/s")


def transaction_latencies(port, count):
    msg = message_1k(0).replace("\n", "\r\n")
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.client") as s:
            s.sendmail("bench@example.org", ["sink@example.net"], msg)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def bench_latency(args, tools, work):
    _, sink_bin, env = tools
    medians, p99s, sink_medians, sink_p99s = [], [], [], []
    for run in range(args.runs):
        spool = os.path.join(work, f"latency-{run}", "spool")
        os.makedirs(os.path.dirname(spool))
        daemon = Leafmaild(args.bin_dir, spool)
        try:
            m, p = transaction_latencies(daemon.port, 200)
        finally:
            daemon.stop()
        medians.append(m)
        p99s.append(p)
        sink = Sink(sink_bin, env)
        try:
            m, p = transaction_latencies(sink.port, 200)
        finally:
            sink.stop()
        sink_medians.append(m)
        sink_p99s.append(p)
        shutil.rmtree(os.path.dirname(spool))
    record("latency", "1 KiB transaction (smtplib), median", medians, sink_medians, "ms")
    record("latency", "1 KiB transaction (smtplib), p99", p99s, sink_p99s, "ms")


def idle_cost_kib(pid, port, connections):
    """RSS growth per idle connection that has read its greeting, in KiB."""
    before = vm_status(pid, "VmRSS")
    sockets = []
    try:
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(s)
        for s in sockets:
            s.recv(512)
        time.sleep(0.5)
        after = vm_status(pid, "VmRSS")
    finally:
        for s in sockets:
            s.close()
    return (after - before) / connections


def bench_memory(args, tools, work):
    _, sink_bin, env = tools
    raise_fd_limit()
    ours, ceiling = [], []
    for run in range(args.runs):
        spool = os.path.join(work, f"idle-{run}", "spool")
        os.makedirs(os.path.dirname(spool))
        daemon = Leafmaild(args.bin_dir, spool)
        try:
            ours.append(idle_cost_kib(daemon.proc.pid, daemon.port, 1000))
        finally:
            daemon.stop()
        shutil.rmtree(os.path.dirname(spool))
        sink = Sink(sink_bin, env)
        try:
            # smtp-sink serves at most 256 connections at once.
            ceiling.append(idle_cost_kib(sink.proc.pid, sink.port, 250))
        finally:
            sink.stop()
    record("memory", "RSS per idle connection (leafmaild 1,000 open; smtp-sink 250)", ours, ceiling, "KiB")

    # One 100 MiB message: received by leafmaild, then relayed by leafmail-flush.
    receive_peaks, flush_peaks = [], []
    for run in range(args.runs):
        big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (100 * 1024 * 1024 // 1000)
        base = os.path.join(work, f"big-{run}")
        spool = os.path.join(base, "spool")
        os.makedirs(base)
        daemon = Leafmaild(args.bin_dir, spool, ["--max-message-size", "200M"])
        try:
            with smtplib.SMTP("127.0.0.1", daemon.port) as s:
                s.sendmail("bench@example.org", ["sink@example.net"], big)
            receive_peaks.append(vm_status(daemon.proc.pid, "VmHWM") / 1024)
        finally:
            daemon.stop()
        del big  # not inherited by the flush started next
        conf = os.path.join(base, "bench.conf")
        open(conf, "w").close()
        flush_peaks.append(timed_flush(args, tools, spool, conf)[1] / 1024)
        shutil.rmtree(base)
    record("memory", "leafmaild peak RSS receiving one 100 MiB message", receive_peaks, None, "MiB")
    record("memory", "leafmail-flush peak RSS relaying one 100 MiB message", flush_peaks, None, "MiB")


def bench_scale(args, tools, work):
    source, _, env = tools
    for queued in (1000, 10000, 100000):
        receive, flush, listing = [], [], []
        for run in range(args.runs):
            base = os.path.join(work, f"scale-{queued}-{run}")
            spool = os.path.join(base, "spool")
            os.makedirs(base)
            subprocess.check_call([args.fill, spool, str(queued), "1024", "sink@example.net"])
            settle_on_disk()
            daemon = Leafmaild(args.bin_dir, spool)
            try:
                receive.append(smtp_source_rate(source, env, daemon.port, 10, args.messages, 1024))
            finally:
                daemon.stop()
            settle_on_disk()
            conf = os.path.join(base, "bench.conf")
            open(conf, "w").close()
            start = time.monotonic()
            subprocess.run([os.path.join(args.bin_dir, "leafmail-list"), "--config", conf, "--spool", spool, "--json"],
                           stdout=subprocess.DEVNULL, check=True, timeout=600)
            listing.append(time.monotonic() - start)
            flush.append(timed_flush(args, tools, spool, conf)[0])
            shutil.rmtree(base)
        record("scale", f"receive 1 KiB x10 with {queued} queued", receive, None, "msg/s")
        record("scale", f"flush of {queued}+{args.messages} entries", flush, None, "msg/s")
        record("scale", f"leafmail-list --json over {queued + args.messages} entries", listing, None, "s")


def print_table(args):
    def cell(values, unit=""):
        m = summarize(values)
        return f"{m[0]:,.1f}{unit} ({m[1]:,.1f}–{m[2]:,.1f})"

    print()
    print(f"leafmail benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, median of {args.runs} runs (min–max). Wire ceiling: the same load "
          f"against smtp-sink (injection: the same shell loops spawning cat). Per-file ceiling: durable "
          f"commits of one new file each (write, fdatasync, rename, directory fsync); flush floor: one "
          f"data-only fdatasync of a 1 KiB overwrite in a preallocated file each (what a journal pays "
          f"without group commit); both at the same concurrency, in the same run.")
    print()
    print("| section | figure | leafmail | wire ceiling | ratio | per-file ceiling | ratio | flush floor | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")

    def beside(ours, other):
        return f"{cell(other)} | {summarize(ours)[0] / summarize(other)[0]:.2f}" if other else "— | —"

    for section, figure, ours, ceiling, unit, disk, flush in RESULTS:
        print(f"| {section} | {figure} | {cell(ours, ' ' + unit)} | {beside(ours, ceiling)} | "
              f"{beside(ours, disk)} | {beside(ours, flush)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="directory holding the leafmail executables")
    parser.add_argument("--fill", required=True, help="the leafmail-bench-fill executable")
    parser.add_argument("--commit", required=True, help="the leafmail-bench-commit executable")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--inject", type=int, default=500, help="sendmail runs per injection figure")
    parser.add_argument("--only", default="receive,flush,injection,latency,memory,scale")
    parser.add_argument("--work", default=None, help="scratch directory on the disk under test (default: /var/tmp)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "leafmail-bench-cache"))
    args = parser.parse_args()
    if args.runs < 3:
        log("note: fewer than 3 runs per figure")
    tools = postfix_tools(args.cache)
    work = tempfile.mkdtemp(prefix="leafmail-bench-", dir=args.work or "/var/tmp")
    try:
        sections = args.only.split(",")
        for name, fn in [("receive", lambda: bench_receive(args, tools, work)),
                         ("flush", lambda: bench_flush(args, tools, work)),
                         ("injection", lambda: bench_injection(args, work)),
                         ("latency", lambda: bench_latency(args, tools, work)),
                         ("memory", lambda: bench_memory(args, tools, work)),
                         ("scale", lambda: bench_scale(args, tools, work))]:
            if name in sections:
                log(f"== {name}")
                fn()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(args)


if __name__ == "__main__":
    main()
