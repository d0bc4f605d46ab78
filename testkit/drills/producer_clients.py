"""Real producers for the producers drill: stock Celery, celery-node, and a bare Redis client.

Each sends through its own library, in a process of its own, the way a user's
service does; nothing here builds Celery messages except the bare client
(testkit/wire.py, README "Any language").

    celery_python("5.4")   a virtualenv with that Celery and its kombu (cached), or ServiceUnavailable
    node_modules()         a folder with celery-node from npm (cached), or ServiceUnavailable
    send_celery(python, broker_url, queue, sends) -> task ids, in order
    send_celery_node(folder, broker_url, queue, sends) -> task ids, in order

A send is {"task", "kwargs", "protocol": 1|2, "options": {...}}; the Celery
options are apply_async's (priority, countdown, headers), with `eta_in_s` and
`expires_in_s` for eta and expires relative to the moment of sending.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from testkit.drills.services import ServiceUnavailable

ENVS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "topicq" / "drill-envs"
INSTALL_TIMEOUT_S = 600

CELERY_SENDER = r'''
import json, sys
from datetime import datetime, timedelta, timezone

import celery
from celery import Celery

spec = json.load(sys.stdin)
apps = {}


def app_for(protocol):
    if protocol not in apps:  # a plain app, as a user writes it: the broker URL and nothing else
        app = Celery("producer", broker=spec["broker"], set_as_current=False)
        app.conf.task_protocol = protocol
        apps[protocol] = app
    return apps[protocol]


ids = []
for send in spec["sends"]:
    options = dict(send.get("options") or {})
    now = datetime.now(timezone.utc)
    if "eta_in_s" in options:
        options["eta"] = now + timedelta(seconds=options.pop("eta_in_s"))
    if "expires_in_s" in options:
        options["expires"] = now + timedelta(seconds=options.pop("expires_in_s"))
    result = app_for(send["protocol"]).send_task(send["task"], kwargs=send["kwargs"], queue=spec["queue"],
                                                 **options)
    ids.append(result.id)
for app in apps.values():
    app.close()
print(json.dumps({"version": celery.__version__, "task_ids": ids}))
'''

NODE_SENDER = r'''
const celery = require("celery-node");
const crypto = require("crypto");
const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));

(async () => {
  const clients = {};
  const ids = [];
  for (const send of spec.sends) {
    let client = clients[send.protocol];
    if (!client) {  // the README's way: createClient(broker, backend, queue)
      client = celery.createClient(spec.broker, spec.broker, spec.queue);
      client.conf.TASK_PROTOCOL = send.protocol;
      await client.isReady();
      clients[send.protocol] = client;
    }
    const id = crypto.randomUUID();
    client.sendTask(send.task, [], send.kwargs, id);
    ids.push(id);
  }
  await new Promise(resolve => setTimeout(resolve, 0));  // sendTask publishes on a later tick
  for (const client of Object.values(clients)) {
    await client.broker.redis.ping();  // after every LPUSH on the same connection
    await client.disconnect();
  }
  console.log(JSON.stringify({version: require("celery-node/package.json").version, task_ids: ids}));
})().catch(error => { console.error(error); process.exit(1); });
'''


class SendFailed(RuntimeError):
    """A producer that is installed could not send: a drill failure, not a missing service."""


def _run(command: list[str], what: str, *, cwd: Path | None = None, stdin: str | None = None,
         timeout: float = INSTALL_TIMEOUT_S, error: type[Exception] = ServiceUnavailable) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise error(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-600:]}")
    return done.stdout


def celery_python(series: str = "5.4") -> str:
    """The python of a virtualenv with Celery `series` and the kombu of its time from PyPI, made once
    and kept (rebuilt when the requirement changes)."""
    home = ENVS / f"celery-{series}"
    python = home / "bin" / "python"
    wanted = [f"celery[redis]=={series}.*", f"kombu=={series}.*"]
    marker = home / ".ready"
    if marker.exists() and marker.read_text() == " ".join(wanted):
        return str(python)
    base = shutil.which("python3.11") or shutil.which("python3")
    if base is None:
        raise ServiceUnavailable("no python3.11 to make the Celery producer's virtualenv")
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    _run([base, "-m", "venv", str(home)], "python -m venv")
    _run([str(home / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *wanted],
         f"pip install {' '.join(wanted)}")
    _run([str(python), "-c", "import celery, kombu.transport.redis"], "importing the installed Celery")
    marker.write_text(" ".join(wanted))
    return str(python)


def project_python() -> str:
    """The project's own Celery, run the same way (a separate process, a plain app)."""
    return sys.executable


def node_modules() -> Path:
    """A folder where `node` can require celery-node, installed from npm once and kept."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ServiceUnavailable("node and npm are not on PATH (celery-node)")
    folder = ENVS / "celery-node"
    if (folder / "node_modules" / "celery-node" / "package.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        (folder / "package.json").write_text(json.dumps({"name": "topicq-drill-producer", "private": True}))
    _run(["npm", "install", "--no-audit", "--no-fund", "celery-node"], "npm install celery-node", cwd=folder)
    return folder


def send_celery(python: str, broker_url: str, queue: str, sends: list[dict[str, Any]],
                workdir: Path) -> tuple[str, list[str]]:
    """(Celery's version, task ids): every send made by a plain Celery app under `python`."""
    script = workdir / "send_celery.py"
    script.write_text(CELERY_SENDER)
    spec = json.dumps({"broker": broker_url, "queue": queue, "sends": sends})
    out = json.loads(_run([python, str(script)], f"the Celery sender ({python})", stdin=spec, timeout=120,
                          error=SendFailed).strip().splitlines()[-1])
    return out["version"], out["task_ids"]


def send_celery_node(folder: Path, broker_url: str, queue: str,
                     sends: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """(celery-node's version, task ids): every send made by celery-node's client."""
    script = folder / "send.js"
    script.write_text(NODE_SENDER)
    spec = json.dumps({"broker": broker_url, "queue": queue, "sends": sends})
    out = json.loads(_run(["node", str(script)], "the celery-node sender", cwd=folder, stdin=spec, timeout=120,
                          error=SendFailed).strip().splitlines()[-1])
    return out["version"], out["task_ids"]


def send_bare(redis_url: str, queue: str, entries: list[str]) -> None:
    """LPUSH hand-built messages (testkit/wire.py) onto `queue` with a plain Redis client."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        for entry in entries:
            client.lpush(queue, entry)
