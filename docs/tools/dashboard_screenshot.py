"""Screenshots of the Ray dashboard while a real `synthface generate` job runs (docs/OPERATIONS.md).

Starts its own token-authenticated Ray head on 127.0.0.1 (explicit free ports, a temp dir, its own
process session, as tests/ops/conftest.py), makes tiny real inputs (an untrained 16x16 generator,
an untrained FR backbone, an identities table and a plan, as the ``gen_inputs`` test fixture),
submits a generation job with ``synthface submit`` and, while the job RUNS, drives headless
Chromium through the DevTools protocol (the token goes in as the dashboard's
``ray-authentication-token`` cookie: authentication stays on) to capture the job's page and the
Actors page. Prints the ``synthface_*`` lines of the node's Prometheus endpoint, waits for the
job to end and, with a ``prometheus`` binary (Debian: apt-get install prometheus), scrapes the
head and runs every query of clusters/grafana/synthface-dashboard.json over the job's time range.
Stops only the processes it started (also on error or Ctrl-C; never `ray stop`).

    .venv/bin/python docs/tools/dashboard_screenshot.py            # writes docs/dashboard_*.png
    .venv/bin/python docs/tools/dashboard_screenshot.py --fault-after 3 --images-per-identity 12 --steps 10
        # no screenshots: the first attempt fails, the re-submitted attempt -r2 resumes and succeeds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
BIN = Path(sys.executable).parent
START = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


def _ops_helpers():
    """tests/ops/conftest.py (free ports, the session-scoped stop, the Head helper)."""
    spec = importlib.util.spec_from_file_location("ops_conftest", TESTS / "ops" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# inputs and the job file ----------------------------------------------------------------------

def make_inputs(root: Path, images_per_identity: int) -> dict:
    """The ``gen_inputs`` fixture's tiny models (tests/gen_helpers.py) with a bigger plan."""
    from gen_helpers import make_gen_inputs

    return make_gen_inputs(root, images_per_identity, images_per_identity // 2)


def write_job(wd: Path, inputs: dict, out: Path, args, fault_marker: str | None) -> Path:
    from gen_helpers import gen_config

    from synthface_ray import config

    sets = {"output.rows_per_file": args.rows_per_file, "pool.actors": args.actors}
    if fault_marker:  # the generator raises once after that many shards (the marker stops a repeat)
        sets |= {"fault.after_shards": args.fault_after, "fault.mode": "raise", "fault.marker": fault_marker}
    cfg = gen_config(inputs, out, name=args.run, **sets)
    cfg.sampler["steps"] = args.steps
    wd.mkdir(parents=True, exist_ok=True)
    job = wd / "generate.yaml"
    job.write_text(f"# synthface generate --config {job.name}\n" + config.dump_yaml(cfg))
    return job


# the Ray head -----------------------------------------------------------------------------------

def start_head(ops, temp: str, token: str):
    ports = dict(zip(ops.PORT_FLAGS, ops.free_ports(len(ops.PORT_FLAGS)), strict=True))
    lo = 20000 + secrets.randbelow(200) * 100
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--dashboard-host", "127.0.0.1", "--temp-dir", temp, "--num-cpus", "2", "--num-gpus", "0",
           "--include-dashboard", "true", "--disable-usage-stats",
           "--min-worker-port", str(lo), "--max-worker-port", str(lo + 99)]
    for flag, port in ports.items():
        cmd += [flag, str(port)]
    log = Path(temp) / "ray-start.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    head = ops.Head(f"http://127.0.0.1:{ports['--dashboard-port']}", token, ports["--metrics-export-port"],
                    temp, proc.pid)
    return proc, head


def job_status(head, sid: str) -> str:
    req = urllib.request.Request(f"{head.address}/api/jobs/{sid}",
                                 headers={"Authorization": f"Bearer {head.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["status"]


def synthface_lines(head) -> list[str]:
    return [line for line in head.metrics().splitlines()
            if "synthface_" in line and not line.startswith("#")]


def metric_total(lines: list[str], prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


# headless Chromium over the DevTools protocol ------------------------------------------------------

CLICK_JS = """(() => {
  const want = %s;
  let el;
  if (want.startsWith('css:')) {
    el = document.querySelector(want.slice(4));
  } else if (want.startsWith('row:')) {  // the first icon of the table row showing that text
    const row = [...document.querySelectorAll('tr')].find(r => r.innerText.includes(want.slice(4)));
    el = row && row.querySelector('svg');
  } else {
    const prefix = want.endsWith('*');
    const text = prefix ? want.slice(0, -1) : want;
    const hit = n => n.nodeType === Node.TEXT_NODE
      && (prefix ? n.textContent.trim().startsWith(text) : n.textContent.trim() === text);
    el = [...document.querySelectorAll('*')].find(e => [...e.childNodes].some(hit));
  }
  if (!el) return false;
  el.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window}));
  return true;
})()"""


class Browser:
    def __init__(self, chromium: str, profile: str, width: int, height: int, port: int) -> None:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}", "about:blank"]
        self.log = open(Path(profile).parent / "chromium.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.port, self.width, self.height = port, width, height

    async def shoot(self, head, pages: list[tuple[str, str, list[str], list[str], Path]], settle_s: float,
                    timeout_s: float) -> list[tuple[Path, str]]:
        """For each (label, url, texts, clicks, png): navigate, wait until every text shows on
        the page (``timeout_s``), click in turn each of ``clicks`` (an element's own text,
        ``prefix*`` for its start, ``css:SELECTOR``, or ``row:TEXT`` for the first icon of the
        table row showing TEXT; e.g. to open collapsed sections), wait
        ``settle_s`` more and capture. Returns (png, page text) pairs."""
        import aiohttp

        async with aiohttp.ClientSession() as http:
            targets = None
            for _ in range(60):
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                        targets = [t for t in await resp.json() if t.get("type") == "page"]
                    if targets:
                        break
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with {self.proc.returncode} (see {self.log.name})")
                await asyncio.sleep(0.5)
            if not targets:
                raise RuntimeError("chromium's DevTools endpoint did not answer")
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                counter = 0

                async def call(method: str, **params):
                    nonlocal counter
                    counter += 1
                    await ws.send_json({"id": counter, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json(timeout=60)
                        if msg.get("id") == counter:
                            if "error" in msg:
                                raise RuntimeError(f"{method}: {msg['error']}")
                            return msg.get("result", {})

                await call("Network.enable")
                done = await call("Network.setCookie", name="ray-authentication-token", value=head.token,
                                  url=head.address + "/", path="/", httpOnly=True, sameSite="Strict")
                if not done.get("success", True):
                    raise RuntimeError("Network.setCookie refused the token cookie")
                await call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                           deviceScaleFactor=1, mobile=False)
                await call("Page.enable")
                shots = []
                for label, url, texts, clicks, png in pages:
                    say(f"chromium: {label}: {url}")
                    await call("Page.navigate", url=url)
                    deadline = time.monotonic() + timeout_s
                    text = ""
                    while time.monotonic() < deadline:
                        res = await call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                         returnByValue=True)
                        text = res.get("result", {}).get("value", "") or ""
                        if all(t in text for t in texts):
                            break
                        await asyncio.sleep(1.0)
                    else:
                        say(f"chromium: {label}: {texts} not all on the page after {timeout_s:.0f} s")
                    for click in clicks:
                        for _ in range(8):
                            res = await call("Runtime.evaluate", expression=CLICK_JS % json.dumps(click),
                                             returnByValue=True)
                            if res.get("result", {}).get("value"):
                                break
                            await asyncio.sleep(1.0)
                        else:
                            say(f"chromium: {label}: nothing to click named {click!r}")
                        await asyncio.sleep(1.5)
                    await asyncio.sleep(settle_s)
                    res = await call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
                    text = res.get("result", {}).get("value", "") or text
                    res = await call("Page.captureScreenshot", format="png")
                    png.write_bytes(base64.b64decode(res["data"]))
                    shots.append((png, text))
                return shots


def shrink(png: Path, max_bytes: int) -> None:
    """Re-encode (palette) and, if still too big, downscale until the PNG is under ``max_bytes``."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    scale = 1.0
    while True:
        size = (int(img.width * scale), int(img.height * scale))
        out = img.resize(size, Image.LANCZOS) if scale < 1 else img
        buf = io.BytesIO()
        out.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        if buf.tell() <= max_bytes or scale < 0.4:
            png.write_bytes(buf.getvalue())
            say(f"{png.name}: {size[0]}x{size[1]}, {buf.tell() // 1024} KB")
            return
        scale *= 0.85


# Prometheus (optional): scrapes the head like a real deployment, to check the Grafana panels -----------

class Prometheus:
    """A Prometheus on 127.0.0.1 scraping every node of the head's session (Ray's service
    discovery file) every 5 s, its data in the temp dir."""

    def __init__(self, binary: str, temp: str, port: int) -> None:
        sd = Path(temp, "session_latest").resolve() / "prom_metrics_service_discovery.json"
        cfg = Path(temp) / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nscrape_configs:\n"
                       f"- job_name: ray\n  file_sd_configs:\n  - files: ['{sd}']\n")
        self.log = open(Path(temp) / "prometheus.log", "w")
        cmd = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={Path(temp) / 'prometheus-data'}",
               f"--web.listen-address=127.0.0.1:{port}"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"

    def query_range(self, expr: str, start: float, end: float, step: float = 5.0) -> list[dict]:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body}")
        return body["data"]["result"]


def check_panels(prom: Prometheus, dashboard: Path, run: str, start: float, end: float) -> list[str]:
    """Run every target of the Grafana dashboard ($run = this run, $__rate_interval = 30s) over
    the job's time range; print what each returns; the titles of panels without data."""
    empty = []
    for panel in json.loads(dashboard.read_text())["panels"]:
        got = False
        for target in panel["targets"]:
            expr = target["expr"].replace("$run", run).replace("$__rate_interval", "30s")
            series = prom.query_range(expr, start, end)
            if not series:
                print(f"  {panel['title']} [{target['legendFormat']}]: no data")
                continue
            got = True
            for s in series:
                values = [float(v) for _, v in s["values"]]
                span = float(s["values"][-1][0]) - float(s["values"][0][0])
                labels = ",".join(f"{k}={v}" for k, v in s["metric"].items()) or "-"
                print(f"  {panel['title']} [{target['legendFormat']}] {labels}: {len(values)} points over "
                      f"{span:.0f} s, max {max(values):.2f}, last {values[-1]:.2f}")
        if not got:
            empty.append(panel["title"])
    return empty


# main ------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Needs chromium (Debian: apt-get install chromium) and the project's venv; "
                                       "Prometheus (apt-get install prometheus) is optional.")
    p.add_argument("--out-dir", default=str(ROOT / "docs"), help="where dashboard_job.png / dashboard_actors.png go")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    p.add_argument("--prometheus", default=shutil.which("prometheus"),
                   help="a prometheus binary: scrape the head and run the Grafana dashboard's queries "
                        "(default: the one on PATH, if any; '' = skip)")
    p.add_argument("--dashboard", default=str(ROOT / "clusters" / "grafana" / "synthface-dashboard.json"))
    p.add_argument("--images-per-identity", type=int, default=45,
                   help="plan rows per identity (10 identities + 2 mixes of half as many); sets the job's length")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (ddim); sets the job's length")
    p.add_argument("--actors", type=int, default=2, help="generator actors")
    p.add_argument("--rows-per-file", type=int, default=12, help="rows per shard")
    p.add_argument("--run", default="dashboard-demo", help="output.name (the metrics' run tag)")
    p.add_argument("--shoot-after", type=float, default=3.0,
                   help="seconds after the first images show on the metrics endpoint before the screenshots")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--max-kb", type=int, default=380, help="each PNG is shrunk under this size")
    p.add_argument("--fault-after", type=int, default=None, metavar="N",
                   help="no screenshots: a generator actor raises once after N shards (fault section), the "
                        "job FAILS, is submitted again (attempt -r2 resumes) and must succeed; checks the "
                        "failure metrics")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs under session_latest/logs)")
    return p.parse_args(argv)


def wait_for_images(head, sid: str, shoot_after: float) -> tuple[float, float]:
    """Poll until the job RUNS and its first images are on the metrics endpoint, then
    ``shoot_after`` seconds; returns (when it was seen RUNNING, images counted)."""
    running_at = counted_at = None
    while True:
        status = job_status(head, sid)
        images = metric_total(synthface_lines(head), "ray_synthface_images_generated")
        now = time.monotonic()
        if status == "RUNNING" and running_at is None:
            running_at = now
            say(f"job {sid} RUNNING")
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise RuntimeError(f"job {sid} ended ({status}) before the screenshots: make it longer "
                               f"(--images-per-identity, --steps)")
        if running_at and images > 0 and counted_at is None:
            counted_at = now
            say(f"first images on the metrics endpoint ({images:.0f}), {now - running_at:.0f} s after RUNNING")
        if counted_at and now - counted_at >= shoot_after:
            return running_at, images
        time.sleep(1.0)


def submit(job: Path, head, token: str) -> tuple[str, str]:
    """`synthface submit` the job file (token in the environment); (submission id, its output)."""
    env = {**os.environ, "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(BIN / "synthface"), "submit", str(job), "--address", head.address, "--working-dir", str(job.parent)]
    say("$ RAY_AUTH_TOKEN=... synthface " + " ".join(cmd[1:]))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    print(done.stdout + done.stderr, flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"synthface submit exited with {done.returncode}")
    return re.search(r"submitted (\S+) to", done.stdout).group(1), done.stdout


def wait_end(head, sid: str) -> str:
    while (status := job_status(head, sid)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(2.0)
    return status


def screenshots(args, ops, head, temp: str, sid: str, out_dir: Path) -> str:
    """The job page (Ray Data Overview opened) and the Actors page while the job runs; the job's
    status right after."""
    browser = Browser(args.chromium, str(Path(temp) / "chromium-profile"), args.width, args.height,
                      ops.free_ports(1)[0])
    try:
        pages = [("job page", f"{head.address}/#/jobs/{sid}", [sid, "RUNNING", "Ray Data Overview"],
                  ["Ray Data Overview", "row:dataset_"],
                  out_dir / "dashboard_job.png"),
                 ("actors page", f"{head.address}/#/actors", ["GeneratorActor", "ALIVE"], [],
                  out_dir / "dashboard_actors.png")]
        shots = asyncio.run(browser.shoot(head, pages, settle_s=4.0, timeout_s=45.0))
        status = job_status(head, sid)
    finally:
        ops.stop_session(browser.proc.pid, grace_s=5)
        browser.log.close()
    say(f"screenshots taken; the job is {status}")
    for png, text in shots:
        if "Unauthorized" in text or "Forbidden" in text or (sid not in text and "GeneratorActor" not in text):
            say(f"WARNING: {png.name} does not show the job or its actors (authentication page?)")
        shrink(png, args.max_kb * 1024)
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.chromium).exists() and args.fault_after is None:
        print(f"chromium not found at {args.chromium}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(TESTS))
    ops = _ops_helpers()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="sfshot", dir="/tmp")  # short: Ray's socket paths are limited
    token = secrets.token_hex(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    head_proc = prom = None
    ok = False
    try:
        say(f"temp dir {temp}; starting a token-auth Ray head on 127.0.0.1")
        head_proc, head = start_head(ops, temp, token)
        ops._wait_up(head, Path(temp) / "ray-start.log", head_proc)
        say(f"head up: dashboard {head.address}, metrics http://127.0.0.1:{head.metrics_port}/metrics")
        if args.prometheus:
            prom = Prometheus(args.prometheus, temp, ops.free_ports(1)[0])
            say(f"prometheus {prom.url} scraping the session's nodes every 5 s")
        inputs = make_inputs(Path(temp) / "inputs", args.images_per_identity)
        fault = None if args.fault_after is None else str(Path(temp) / "fault-fired")
        job = write_job(Path(temp) / "wd", inputs, Path(temp) / "out", args, fault)
        say(f"inputs: {inputs['rows']} plan rows, {args.steps} steps, {args.actors} actors; job {job}")
        job_start = time.time()
        sid, _ = submit(job, head, token)
        if fault is None:
            running_at, images = wait_for_images(head, sid, args.shoot_after)
            say(f"{images:.0f} of {inputs['rows']} images counted; taking screenshots")
            ok = screenshots(args, ops, head, temp, sid, out_dir) == "RUNNING"
            say(f"synthface lines on http://127.0.0.1:{head.metrics_port}/metrics while it runs:")
            print("\n".join(synthface_lines(head)), flush=True)
            status = wait_end(head, sid)
            say(f"job {sid}: {status}, {time.monotonic() - running_at:.0f} s after RUNNING")
            ok = ok and status == "SUCCEEDED"
        else:
            status = wait_end(head, sid)
            say(f"job {sid}: {status} (fault.after_shards={args.fault_after}); submitting it again")
            sid2, text = submit(job, head, token)
            status2 = wait_end(head, sid2)
            say(f"job {sid2}: {status2}")
            ok = status == "FAILED" and sid2 == f"{sid}-r2" and f"resumes {sid}" in text and status2 == "SUCCEEDED"
        time.sleep(12.0)  # the actors' last report (every 10 s) and one more scrape
        lines = synthface_lines(head)
        say("synthface lines after the job ended:")
        print("\n".join(lines), flush=True)
        names = sorted({re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0) for line in lines})
        say("exported names: " + ", ".join(names))
        if prom is not None:
            say(f"the Grafana panels of {Path(args.dashboard).name} over the job's time range (prometheus):")
            empty = check_panels(prom, Path(args.dashboard), args.run, job_start, time.time())
            say(f"panels without data: {empty or 'none'}")
    finally:
        if prom is not None:
            ops.stop_session(prom.proc.pid, grace_s=5)
            prom.log.close()
        if head_proc is not None:
            say("stopping the head's session (its processes only)")
            ops.stop_session(head_proc.pid)
            head_proc.wait(timeout=30)
        if args.keep:
            say(f"kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
        say(f"done in {time.monotonic() - START:.0f} s: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
