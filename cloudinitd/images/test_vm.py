"""`cloudinitd image test`: ExTENCI's extenci-test-vm in one command, on any cloud that stages.

Stage the file, boot one instance of it through the engine (a generated
one-service plan), wait for SSH and run the check, show how to reach it,
then terminate it and unstage the image unless the user keeps it. Every
step that leaves something behind (a staged image or upload, a run) is
recorded as it starts; whatever happens next (a failure, Ctrl-C), the
`finally` undoes the recorded steps the user did not keep.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.plan.model import CloudSpec

SERVICE = "vm"
DEFAULT_CHECK = "# image test: SSH works\nuname -a\n"
Say = Callable[[str], None]
Decide = Callable[[dict[str, Any]], bool]  # the test's result -> keep the image?


@dataclass
class ImageTest:
    home: Path
    store: Any
    cloud: CloudSpec
    provider: Any  # the cloud's provider: its image hooks stage and unstage (providers/base.py)
    file: Path
    name: str
    size: str | None = None
    check: Path | None = None
    ssh_user: str | None = None
    ssh_key: Path | None = None
    ssh_port: int | None = None
    say: Say = print
    steps: list[str] = field(default_factory=list)  # what is out there now, in order
    undone: list[str] = field(default_factory=list)

    # -- the generated plan ---------------------------------------------------------
    def plan_path(self) -> Path:
        folder = self.home / "image-test"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        check = self.check.read_text() if self.check else DEFAULT_CHECK
        defaults: dict[str, Any] = {"cloud": self.cloud.name, "image": self.name}
        if self.size:
            defaults["size"] = self.size
        if self.ssh_user:
            defaults["ssh_user"] = self.ssh_user
        if self.ssh_key:
            defaults["ssh_key"] = str(self.ssh_key.expanduser().resolve())
        if self.ssh_port:
            defaults["ssh_port"] = self.ssh_port
        data = {
            "name": "image-test",
            "defaults": defaults,
            "services": {SERVICE: {"boot": "check.sh"}},  # once: a failure fails the test
        }
        text = (f"# Made by `cloudinitd image test` for {self.file.name} on {self.cloud.name}.\n"
                + yaml.safe_dump(data, sort_keys=False))
        digest = hashlib.sha256((text + check).encode()).hexdigest()[:12]
        where = folder / digest
        where.mkdir(exist_ok=True)
        (where / "check.sh").write_text(check)
        path = where / "plan.yml"
        path.write_text(text)
        return path

    # -- steps ----------------------------------------------------------------------
    def run(self, decide: Decide, make_bar: Callable[[], Any],
            boot_progress: Any = None) -> dict[str, Any]:
        from cloudinitd.api.launchvm import ssh_command
        from cloudinitd.catalog import load_catalog
        from cloudinitd.engine.boot import boot, start_run
        from cloudinitd.plan.loader import load_plan

        if self.provider.has_image(self.name):
            raise UsageError(f"cloud {self.cloud.name!r}: an image named {self.name!r} exists "
                             "already; give the test another --name")
        keep = False
        ctx = None
        result: dict[str, Any] = {"name": self.name, "cloud": self.cloud.name}
        try:
            self.steps.append("stage")
            self.say(f"Staging {self.file} as {self.name} on {self.cloud.name}...")
            with make_bar() as bar:  # a context manager taking bytes sent
                staged = self.provider.import_image(self.file, self.name, bar, say=self.say)
            result["staged"] = staged
            self.say(f"Staged {staged.get('url') or staged.get('path')} as {staged['image_id']}")
            plan = load_plan(self.plan_path(), catalog=load_catalog(self.home))
            from cloudinitd.cli import output

            ctx = start_run(self.home, self.store, plan, {}, None,
                            progress=boot_progress or output.NoProgress())
            self.steps.append("run")
            result["run"] = ctx.run
            self.store.event(ctx.run, "image", f"image test of {self.name} ({staged['image_id']})")
            self.say(f"Booting one instance of {self.name} (run {ctx.run})...")
            booted = boot(ctx)
            if not booted.ok:
                failures = {n: s.as_dict() for n, s in booted.services.items()}
                result["services"] = failures
                raise ProviderError(f"image test of {self.name}: the instance did not pass the "
                                    f"check (see cloudinitd status {ctx.run})")
            svc = ctx.plan.services[SERVICE]
            row = ctx.store.instances(ctx.run, SERVICE)[0]
            target = ctx.target(svc, row)
            result.update(
                address=row.address, instance_id=row.instance_id,
                ssh=ssh_command(target.key_path, target.known_hosts, target.user,
                                row.address, target.port),
                check="passed",
            )
            self.say(f"The check passed. Address: {row.address}")
            self.say(f"Reach it with: {result['ssh']}")
            keep = decide(result)
        finally:
            self._undo(ctx, keep)
        result.update(kept=keep, undone=list(self.undone))
        return result

    def _undo(self, ctx: Any, keep: bool) -> None:
        """Terminate the run, then unstage unless kept; each undo is tried even if one fails."""
        from cloudinitd.engine.terminate import terminate_run

        problems: list[str] = []
        if "run" in self.steps and ctx is not None:
            self.say(f"Terminating run {ctx.run}...")
            try:
                done = terminate_run(ctx)
                problems.extend(done.errors)
                self.undone.append("run")
            except Exception as exc:  # keep going: the image must still go
                problems.append(f"terminate {ctx.run}: {exc}")
        if "stage" in self.steps and not keep:
            self.say(f"Unstaging {self.name}...")
            try:
                self._unstage()
                self.undone.append("stage")
            except Exception as exc:
                problems.append(f"unstage {self.name}: {exc}")
        if problems:
            raise ProviderError("image test clean-up incomplete: " + "; ".join(problems))

    def _unstage(self) -> None:
        # UsageError: nothing of that name was staged (stopped before the upload began).
        # force: the test's run is gone by now; an image it still held goes anyway.
        with contextlib.suppress(UsageError):
            self.provider.delete_image(self.name, force=True)
