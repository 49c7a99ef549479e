"""The fchm-server dashboard in a real browser, end to end.

Mosquitto on a free port, `fchmd` with config/fchmd-demo.toml (test scene) as
device `dash-test`, `fchm-server` decoding its frames, and headless Chromium
driven by Selenium: the device's card must come up online with its picture or
detection boxes, and setting the target bitrate from the card must reach the
device, which reports it back (checked in the page and with mosquitto_sub).

Needs the binaries from `cargo build` (target/debug/fchm-server and fchmd),
Mosquitto (/usr/sbin/mosquitto, mosquitto_sub) and a model bundle:
$FCHM_TEST_BUNDLE if set, else models/centernet-vfcn. Skipped only when
Chromium, chromedriver or the selenium package are missing.
"""

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "debug"
DEMO_CONFIG = ROOT / "config" / "fchmd-demo.toml"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MOSQUITTO = "/usr/sbin/mosquitto"
DEVICE = "dash-test"

SERVER_READY_S = 120  # fchm-server loads its models before it prints its URL
CARD_READY_S = 120  # decoding takes about 1 s per frame on a small CPU
STATE_S = 30  # set -> device -> retained state -> server -> next poll


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"({path}: no log)"
    return "\n".join(text.splitlines()[-lines:])


class Proc:
    """A child process whose stderr (and stdout, unless piped) goes to a log file."""

    def __init__(self, name, args, log_dir, pipe_stdout=False, **kwargs):
        self.name = name
        self.log = Path(log_dir) / f"{name}.log"
        self._log_file = open(self.log, "wb")
        self.popen = subprocess.Popen(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else self._log_file,
            stderr=self._log_file,
            **kwargs,
        )

    def running(self):
        return self.popen.poll() is None

    def stop(self, grace_s=10):
        """SIGTERM, then SIGKILL after grace_s."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log_file.close()

    def report(self):
        return f"----- {self.name} (exit {self.popen.poll()}), {self.log}:\n{tail(self.log)}"


class StdoutLines:
    """Reads a child's stdout on a thread: lines are queued and copied to a file."""

    def __init__(self, proc, copy_to):
        self.lines = queue.Queue()
        self.copy_to = Path(copy_to)
        self._proc = proc
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        with open(self.copy_to, "w") as copy:
            for raw in self._proc.popen.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                copy.write(line + "\n")
                copy.flush()
                self.lines.put(line)

    def wait_for(self, pattern, timeout_s):
        """The first match of `pattern` in a line, or None after timeout_s or EOF."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if not self._proc.running() and self.lines.empty():
                    return None
                continue
            if m := re.search(pattern, line):
                return m
        return None


def set_toml_key(text, section, key, value):
    """Set `key = value` (value already TOML) in [section] of a TOML text
    (section None: the top level), replacing the key's line or adding it."""
    out, current, done = [], None, False
    for line in text.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]\s*$", line)
        if header:
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = header.group(1).strip()
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            line, done = f"{key} = {value}", True
        out.append(line)
    if not done:
        if current != section:
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


def toml_string(path):
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def bundle_dir():
    env = os.environ.get("FCHM_TEST_BUNDLE")
    bundle = Path(env) if env else ROOT / "models" / "centernet-vfcn"
    bundle = bundle if bundle.is_absolute() else ROOT / bundle
    assert (bundle / "manifest.json").exists(), (
        f"{bundle} has no manifest.json: set FCHM_TEST_BUNDLE to a model bundle "
        "or complete models/centernet-vfcn with scripts/setup.sh"
    )
    return bundle


def fchmd_config(work, bundle):
    """config/fchmd-demo.toml with the bundle, a spool in `work` and 1 frame/s
    (the CPU is shared with the decoding server and the browser)."""
    text = DEMO_CONFIG.read_text()
    text = set_toml_key(text, None, "bundle", toml_string(bundle))
    text = set_toml_key(text, "spool", "dir", toml_string(work / "spool"))
    text = set_toml_key(text, "source", "fps", "1.0")
    cfg = tomllib.loads(text)  # still valid TOML, with our values
    assert cfg["bundle"] == str(bundle) and cfg["spool"]["dir"] == str(work / "spool")
    path = work / "fchmd.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def webdriver_mod():
    """Selenium's webdriver module; skips when the browser stack is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        )
    return pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (pip install selenium)"
    )


@pytest.fixture(scope="module")
def binaries():
    paths = {name: BIN / name for name in ("fchm-server", "fchmd")}
    missing = [str(p.relative_to(ROOT)) for p in paths.values() if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run cargo build first")
    for tool in (MOSQUITTO, "mosquitto_sub"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not found: apt-get install mosquitto mosquitto-clients")
    return paths


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def procs():
    """Every started process, stopped in reverse order at the end, pass or fail."""
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture(scope="module")
def broker(work, procs):
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = Proc("mosquitto", [MOSQUITTO, "-c", conf], work)
    procs.append(proc)
    if not wait_for_port(port, 10):
        pytest.fail(f"mosquitto did not listen on {port}\n{proc.report()}")
    return port


@pytest.fixture(scope="module")
def device(binaries, broker, work, procs):
    """fchmd publishing the demo test scene as DEVICE."""
    proc = Proc(
        "fchmd",
        [
            binaries["fchmd"],
            "--config", fchmd_config(work, bundle_dir()),
            "--broker", f"mqtt://127.0.0.1:{broker}",
            "--device-id", DEVICE,
        ],
        work,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc


@pytest.fixture(scope="module")
def server(binaries, broker, work, procs):
    """fchm-server; returns (dashboard URL, its Proc)."""
    proc = Proc(
        "fchm-server",
        [
            binaries["fchm-server"],
            "--broker", f"mqtt://127.0.0.1:{broker}",
            "--bundle", bundle_dir(),
            "--http", "127.0.0.1:0",
            "--instance-id", "dash",
        ],
        work,
        pipe_stdout=True,
        cwd=ROOT,
    )
    procs.append(proc)
    out = StdoutLines(proc, work / "fchm-server.stdout")
    m = out.wait_for(r"^fchm-server: dashboard (http://\S+)", SERVER_READY_S)
    if not m:
        pytest.fail(
            f"fchm-server printed no dashboard URL within {SERVER_READY_S} s\n"
            f"{proc.report()}\nstdout:\n{tail(out.copy_to)}"
        )
    return m.group(1), proc


@pytest.fixture(scope="module")
def browser(webdriver_mod):
    from selenium.webdriver.chrome.service import Service

    options = webdriver_mod.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver_mod.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


# ---------------------------------------------------------------- test


def test_dashboard_shows_the_device_and_sets_its_bitrate(
    webdriver_mod, browser, broker, device, server, procs
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    card_css = f'section.device[data-device="{DEVICE}"]'

    def card_ready(driver):
        """The card, once online and showing its picture or a detection box."""
        for p in procs:
            assert p.running(), f"{p.name} exited\n{p.report()}"
        cards = driver.find_elements(By.CSS_SELECTOR, card_css)
        if not cards or cards[0].find_element(By.CSS_SELECTOR, ".status").text != "online":
            return None
        picture = driver.execute_script(
            "return arguments[0].querySelector('img.latest').naturalWidth", cards[0]
        )
        boxes = cards[0].find_elements(By.CSS_SELECTOR, ".boxes .box")
        return cards[0] if picture or boxes else None

    try:
        browser.get(url)
        card = WebDriverWait(browser, CARD_READY_S, poll_frequency=0.5).until(
            card_ready, f"no online card with a picture or boxes for {DEVICE}"
        )
        assert browser.find_element(By.ID, "updated").text not in ("", "never")

        target = card.find_element(By.CSS_SELECTOR, "input.target-kbps")
        target.clear()
        target.send_keys("300")
        card.find_element(By.CSS_SELECTOR, "button.apply-target-kbps").click()
        state = card.find_element(By.CSS_SELECTOR, ".state-target_kbps")
        WebDriverWait(browser, STATE_S, poll_frequency=0.5).until(
            lambda _: state.text == "300",
            "the card never showed state target_kbps 300",
        )
        assert card.find_element(By.CSS_SELECTOR, ".error").text == ""

        # Independently of the server: the device's retained state.
        sub = subprocess.run(
            [
                "mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker),
                "-t", f"fchm/{DEVICE}/state/target_kbps", "-C", "1", "-W", "10",
            ],
            capture_output=True, text=True, timeout=20,
        )
        assert sub.returncode == 0, f"mosquitto_sub: {sub.returncode} {sub.stderr}"
        assert sub.stdout.strip() == "300"

        # Failed loads (e.g. a 404 picture before the first frame) are
        # "network" entries; script errors are not.
        log = browser.get_log("browser")
        errors = [e for e in log if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert not errors, f"browser errors: {errors}"
    except BaseException:
        dump_logs(browser, procs)
        raise


def dump_logs(browser, procs):
    """Print the page, the browser's console and the processes' logs (pytest
    shows them on failure)."""
    try:
        print("page text:", browser.execute_script("return document.body.innerText"))
        print("browser log:", *browser.get_log("browser"), sep="\n  ")
    except Exception as e:  # the browser itself may be gone
        print(f"browser unavailable: {e}")
    for p in procs:
        print(p.report())
