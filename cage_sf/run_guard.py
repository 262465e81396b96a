"""A run that cannot make progress stops within seconds, with one line saying which component failed and why.

Sample Factory 2.1.1 runs the learner, the inference workers and the rollout workers as event loops in their
own processes. An exception in one of them (at start-up too) is logged and ends that loop, but the process
lingers (the learner's batcher thread keeps it alive) and the runner goes on at 0 FPS, ignoring
`--train_for_seconds`, until someone kills it. Two pieces close that hole in one place:

- `install()` (every process, through `sf_compat.apply()`) wraps the body of every Sample Factory process:
  an exception is logged with its traceback to the run's log, reported to the runner as one line (a
  `RunFailure`'s message as it is, e.g. `cage_sf.divergence`'s), and the process exits at once whatever
  threads it still has.
- `RunGuard` (the runner's process) stops the run as failed on such a report, on a component process that
  died without one (killed, out of memory), or when no frames arrive for `--stall_timeout_s`. The stop saves a
  checkpoint when the learner is alive; components still waited for once every component process has exited,
  or after `STOP_GRACE_S`, are given up and their processes killed.

Making the env in the helper process that reads its spaces fails the same way (SF would wait forever).
`train()` then raises `RunFailure` with the one line, which the CLI prints on stderr.
"""

from __future__ import annotations

import functools
import inspect
import logging
import multiprocessing
import os
import threading
import time
from queue import Empty

from sample_factory.algo.runners import runner as runner_module
from sample_factory.algo.runners.runner import Runner
from sample_factory.algo.utils.context import sf_global_context
from sample_factory.algo.utils.env_info import EnvInfo, spawn_tmp_env_and_get_info
from sample_factory.algo.utils.misc import ExperimentStatus
from sample_factory.utils.typing import Config
from sample_factory.utils.utils import init_file_logger, log
from signal_slot.signal_slot import EventLoopObject, EventLoopProcess, Timer, signal

from cage_sf.console import route_sf_console
from cage_sf.errors import RunFailure

FAILURE_KEY = "cage_sf_component_failure"
FAILED_PROCESS_EXIT_CODE = 3
CHECK_EVERY_S = 1.0
STOP_GRACE_S = 10.0
STOP_POLL_S = 0.1

_sf_process_body = EventLoopProcess._target
_sf_obtain_env_info = runner_module.obtain_env_info_in_a_separate_process


def install() -> None:
    """Every Sample Factory process reports its failure and exits; its console log keeps stderr clean."""
    EventLoopProcess._target = _guarded_process_body
    runner_module.obtain_env_info_in_a_separate_process = obtain_env_info
    route_sf_console()


def one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


@functools.wraps(_sf_process_body)  # its name too: a spawned process finds its body by name when unpickled
def _guarded_process_body(process: EventLoopProcess) -> None:
    try:
        _sf_process_body(process)
    except Exception as exc:  # noqa: BLE001 - whatever a component raises ends the run, reported as one line
        log.exception("%s failed", process.name)
        _report(process, str(exc) if isinstance(exc, RunFailure) else f"{process.name} failed: {one_line(exc)}")
        os._exit(FAILED_PROCESS_EXIT_CODE)  # a plain exit would wait for the component's threads: forever


def _report(process: EventLoopProcess, line: str) -> None:
    """Send the line through the first component of this process whose `report_msg` reaches the runner."""
    for component in list(process.event_loop.objects.values()):
        if isinstance(inspect.getattr_static(component, "report_msg", None), signal):
            component.report_msg.emit({FAILURE_KEY: line})
            return


class RunGuard(EventLoopObject):
    """Watches a runner from its own event loop; `failure` holds the line once the run was stopped as failed."""

    def __init__(self, runner: Runner, stall_timeout_s: float):
        EventLoopObject.__init__(self, runner.event_loop, object_id=type(self).__name__)
        self.runner = runner
        self.stall_timeout_s = stall_timeout_s
        self.failure: str | None = None
        self._progress: tuple | None = None
        self._progress_at = 0.0
        self._seen_dead: set[str] = set()
        runner.msg_handlers[FAILURE_KEY] = [lambda _, msg: self.fail(msg[FAILURE_KEY])]
        self._timer = Timer(runner.event_loop, CHECK_EVERY_S)
        self._timer.timeout.connect(self._check)

    def fail(self, line: str) -> None:
        if self.failure is not None or self.runner.stopped:
            return
        self.failure = line
        log.error("Stopping: %s", line)
        self.runner._stop_training(failed=True)
        # a daemon: a run that stopped in time exits without waiting for it
        threading.Thread(target=self._end_stuck_stop, name="cage_sf_stop_watch", daemon=True).start()

    def _check(self) -> None:
        if self.runner.stopped:
            self._timer.stop()
            return
        now = time.monotonic()
        progress = (sum(self.runner.samples_collected), tuple(self.runner.env_steps.values()))
        if progress != self._progress:
            self._progress, self._progress_at = progress, now
        elif now - self._progress_at > self.stall_timeout_s:
            self.fail(f"no frames collected for {self.stall_timeout_s:g} s (--stall_timeout_s)")
        for process in self._component_processes():
            if process.is_alive():
                continue
            if process.name in self._seen_dead:  # dead for a whole check: it sent no report
                self.fail(f"{process.name} exited with code {process.exitcode}")
            self._seen_dead.add(process.name)

    def _component_processes(self) -> list[EventLoopProcess]:
        components = [*self.runner.learners.values(), *self.runner.sampler.stoppable_components()]
        processes = {c.event_loop.process for c in components if c.event_loop is not None}
        return [p for p in processes if isinstance(p, EventLoopProcess)]

    def _end_stuck_stop(self) -> None:
        """A component that has not stopped once every component process has exited, or within STOP_GRACE_S,
        never will (SF waits for a stop message from, say, the batcher thread of a learner process that died):
        end them."""
        deadline = time.monotonic() + STOP_GRACE_S
        while self.runner.components_to_stop and time.monotonic() < deadline:
            if not any(process.is_alive() for process in self._component_processes()):
                break
            time.sleep(STOP_POLL_S)
        if not self.runner.components_to_stop:
            return
        log.warning("Components did not stop: ending their processes")
        _kill_children()
        self.runner.all_components_stopped.emit()

    def init_runner(self) -> int:
        """`runner.init()`. SF refuses a configuration it cannot run (`verify_cfg`, e.g. sync mode whose batch is
        not a multiple of a rollout) by logging errors before the run's log file exists: they become the line."""
        refusals = _ErrorRecords()
        log.addHandler(refusals)
        try:
            status = self.runner.init()
        finally:
            log.removeHandler(refusals)
        if status == ExperimentStatus.FAILURE and refusals.messages:
            self.failure = "Sample Factory refused the configuration: " + "; ".join(refusals.messages)
        return status

    def check_outcome(self, status: int) -> None:
        """Raise `RunFailure` with the run's line if it failed; no process of it outlives the command."""
        if status != ExperimentStatus.FAILURE:
            return
        _kill_children()
        log_file = os.path.join(self.runner.cfg.train_dir, self.runner.cfg.experiment, "sf_log.txt")
        raise RunFailure(self.failure or f"the run failed; see {log_file}")


class _ErrorRecords(logging.Handler):
    """Each error logged while attached, as one line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


def _kill_children() -> None:
    for child in multiprocessing.active_children():
        child.kill()
        child.join()


def obtain_env_info(cfg: Config) -> EnvInfo:
    """Sample Factory's `obtain_env_info_in_a_separate_process` without its hang: when making the env fails, its
    helper process dies and SF waits on the result queue forever. Here the failure comes back as one line."""
    if cfg.use_env_info_cache:
        return _sf_obtain_env_info(cfg)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_env_info_or_failure, args=(sf_global_context(), results, cfg))
    process.start()
    while True:
        try:
            result = results.get(timeout=CHECK_EVERY_S)
            break
        except Empty:
            if not process.is_alive():
                raise RunFailure(f"making the env failed: its process exited with code {process.exitcode}") from None
    process.join()
    if isinstance(result, str):
        raise RunFailure(result)
    return result


def _env_info_or_failure(sf_context, results, cfg: Config) -> None:
    try:
        spawn_tmp_env_and_get_info(sf_context, results, cfg)
    except Exception as exc:  # noqa: BLE001 - the runner reports it as one line
        init_file_logger(cfg)
        log.exception("making the env failed")
        results.put(f"making the env failed: {one_line(exc)}")
