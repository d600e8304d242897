"""Background generation: one run at a time per studio, on a worker thread, cancellable within one step.

Plain Python, no widgets. `GenerationController` runs a job (normally `PipelineManager.run`) on a thread
and reports to callbacks with plain values: ``(step, total)`` ints for progress, a PIL image for a
preview, and the finished `GenerationRun` (result, or error message and traceback text). Progress and
previews are throttled here, so a widget bound to them is never flooded (previews at most 4 per second).
The panel (`nbinpaint.widgets.panel`) only binds these callbacks to traitlets.

Why a thread: diffusers spends its time inside torch operations, which release the GIL, so the kernel keeps
handling comm messages (canvas strokes, a Cancel click) while a run goes on; the step callbacks here do
constant work. Why one run at a time: a second Generate click on the same studio is refused with
`GenerationBusy` (a visible message in the panel) rather than queued, since a queued run would use the
parameters of a moment the user has already moved on from. Runs from two studios on one checkpoint are
serialised by the manager's checkpoint lock.

Which parameters a model takes is answered by `pipeline_parameters`, the one lookup the panel uses: it asks
the manager (`nbinpaint.contract.Manager`), local or a workshop server's, for the pipeline's class and
parameters.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from nbinpaint import openmp
from nbinpaint.errors import GenerationCancelled, NbinpaintError
from nbinpaint.lora import PagUnsupportedError
from nbinpaint.parameters import PANEL
from nbinpaint.requests import CALL_PARAMETERS

if TYPE_CHECKING:
    from nbinpaint.contract import Manager

__all__ = [
    "PANEL_PARAMETERS",
    "PANEL_REQUIREMENTS",
    "GenerationBusy",
    "GenerationController",
    "GenerationRun",
    "PipelineParameters",
    "error_message",
    "pipeline_parameters",
    "start_thread",
]

log = logging.getLogger(__name__)

#: The panel's request fields and the ``__call__`` parameter each one feeds: the table's panel rows
#: (`nbinpaint.parameters.PANEL`) that feed one, plus the seed (a ``generator``) and prompt weighting (Compel's
#: ``prompt_embeds``). A control is enabled exactly when the selected pipeline's signature has its parameter.
PANEL_PARAMETERS: dict[str, str] = {
    **{row.name: row.call for row in PANEL if row.call is not None},
    "seed": "generator",
    "prompt_weighting": CALL_PARAMETERS["prompt_embeds"],
}

#: The panel's fields that feed no ``__call__`` parameter but work through some (soft inpainting re-blends
#: latents in ``callback_on_step_end``): field -> (the parameters it needs, why), from the table's ``requires``.
PANEL_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    row.name: (row.requires, row.requires_why) for row in PANEL if row.requires
}
_WORDS: dict[str, str] = {row.name: row.words for row in PANEL}


EXIT_WAIT_S = 10.0
"""Seconds the interpreter waits at exit for background runs to stop (they are cancelled first)."""

_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_runs: weakref.WeakSet[GenerationRun] = weakref.WeakSet()


def start_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """Start a daemon thread that the interpreter waits for (briefly) at exit.

    Daemon, so a long run never keeps a finished script alive; waited for, because a thread still inside
    torch while the interpreter shuts down aborts the process ("terminate called without an active
    exception"). `_stop_at_exit` cancels the runs first, so the wait is about one denoising step.

    The calling thread's idle OpenMP workers are released first: otherwise they make torch's loops on the new
    thread about 30% slower on a small CPU machine (see `nbinpaint.openmp`).
    """
    openmp.release_idle_threads()
    thread = threading.Thread(target=target, name=name, daemon=True)
    _threads.add(thread)
    thread.start()
    return thread


@atexit.register
def _stop_at_exit() -> None:
    for run in list(_runs):
        run.cancel()
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in list(_threads):
        if thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))


class GenerationBusy(NbinpaintError):
    """A run is already going on in this studio; the message says to wait or press Cancel."""


@dataclass(frozen=True)
class PipelineParameters:
    """What one model's pipeline accepts, and why a panel control is off for it.

    ``pipeline`` names the pipeline in messages: its class name when loaded here, the model id otherwise.
    """

    pipeline: str
    accepted: frozenset[str]
    #: Load options the model refused (``{"enable_pag": "diffusers has no PAG version of ..."}``): a load
    #: option reaches no ``__call__``, so its reason comes from the load that failed.
    refused: Mapping[str, str] = field(default_factory=dict)

    def supports(self, field: str) -> bool:
        """Whether the panel field ``field`` (a key of `PANEL_PARAMETERS` or `PANEL_REQUIREMENTS`) reaches
        this pipeline."""
        if field in PANEL_REQUIREMENTS:
            return set(PANEL_REQUIREMENTS[field][0]) <= self.accepted
        return PANEL_PARAMETERS[field] in self.accepted

    def reason(self, field: str) -> str | None:
        """Why ``field`` is disabled for this pipeline (``"X does not take padding_mask_crop"``), or None: plain
        words for a tooltip, decided from the pipeline's ``__call__`` signature."""
        if self.supports(field):
            return None
        if field in PANEL_REQUIREMENTS:
            needs, why = PANEL_REQUIREMENTS[field]
            missing = ", ".join(name for name in needs if name not in self.accepted)
            return f"{self.pipeline} does not take {missing}, which {_WORDS[field]} needs: {why}"
        return f"{self.pipeline} does not take {PANEL_PARAMETERS[field]}"

    def unsupported(self) -> dict[str, str]:
        """Every panel field this pipeline does not take, with its reason."""
        fields = [*PANEL_PARAMETERS, *PANEL_REQUIREMENTS]
        reasons = {field: reason for field in fields if (reason := self.reason(field)) is not None}
        return {**reasons, **self.refused}


def pipeline_parameters(
    manager: Manager, model: str, task: str = "inpaint", *, controlnet: str | None = None, enable_pag: bool = False
) -> PipelineParameters:
    """What ``model``'s pipeline for ``task`` accepts, asked of the manager (`Manager.pipeline_class` and
    `Manager.accepted_parameters`), so a workshop server answers as a local manager does.

    A local manager loads the pipeline (or fetches it from the cache) to answer: call this off the
    notebook's thread.
    """
    where: dict[str, Any] = {"controlnet": controlnet}
    refused = {}
    if enable_pag:  # the PAG pipeline where the model has one; else the plain one, and PAG's reason
        try:
            manager.pipeline_class(model, task, **where, enable_pag=True)
            where["enable_pag"] = True
        except PagUnsupportedError as error:
            refused["enable_pag"] = error.reason
    return PipelineParameters(
        manager.pipeline_class(model, task, **where),
        frozenset(manager.accepted_parameters(model, task, **where)),
        refused,
    )


def error_message(error: BaseException) -> str:
    """What the panel shows for a failure: nbinpaint's own messages as they are (they name the fix),
    anything else with its type, and a pointer to the traceback."""
    if isinstance(error, NbinpaintError):
        return str(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:300]} (the full traceback is under Details)."


class _Throttle:
    """True at most once per ``interval`` seconds (the first call always passes)."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")

    def ready(self) -> bool:
        now = self.clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True


ProgressCallback = Callable[[int, int], Any]
PreviewCallback = Callable[[int, int, Image.Image], Any]
FinishCallback = Callable[["GenerationRun"], Any]
Job = Callable[["GenerationRun"], Any]


class GenerationRun:
    """One background run: its status, step count, result or error, and the callbacks the engine calls.

    ``status`` goes ``"running"`` → ``"done"``, ``"cancelled"`` or ``"failed"``. ``steps`` counts every
    denoising step reported, ``steps_after_cancel`` those that ended after `cancel` was called (at most one:
    the step in progress when the click came).
    """

    def __init__(
        self,
        job: Job,
        *,
        label: str,
        on_progress: ProgressCallback | None,
        on_preview: PreviewCallback | None,
        on_finish: FinishCallback | None,
        progress_interval: float,
        preview_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.label = label
        self.status = "running"
        self.result: Any = None
        self.error: BaseException | None = None
        self.message = ""
        self.traceback = ""
        self.steps = 0
        self.total = 0
        self.steps_after_cancel = 0
        self.previews = 0
        self.started = clock()
        self.finished: float | None = None
        self._job = job
        self._on_progress = on_progress
        self._on_preview = on_preview
        self._on_finish = on_finish
        self._progress = _Throttle(progress_interval, clock)
        self._preview = _Throttle(preview_interval, clock)
        self._clock = clock
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------------------

    def cancel(self) -> bool:
        """Ask the run to stop at the end of the current denoising step; False when it is already over."""
        if self._done.is_set():
            return False
        self._cancel.set()
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run (and its finish callback) is over; False if ``timeout`` passed first."""
        return self._done.wait(timeout)

    @property
    def seconds(self) -> float:
        end = self.finished if self.finished is not None else self._clock()
        return end - self.started

    # -- what the engine calls -----------------------------------------------------------------------------

    def should_stop(self) -> bool:
        """`PipelineManager.run`'s ``should_stop``: true once Cancel was pressed."""
        return self._cancel.is_set()

    def on_step(self, step: int, total: int, tensors: Mapping[str, Any] | None = None) -> None:
        """`PipelineManager.run`'s ``on_step``: count, and pass ``(step, total)`` on, throttled (the last
        step always passes). The step's tensors stay here: widgets get plain values."""
        self.steps += 1
        self.total = total
        if self._cancel.is_set():
            self.steps_after_cancel += 1
        if self._on_progress is not None and (step >= total or self._progress.ready()):
            self._on_progress(step, total)

    def on_preview(self, step: int, total: int, image: Image.Image) -> None:
        """`PipelineManager.run`'s ``on_preview``: passed on at most once per preview interval."""
        if self._on_preview is not None and self._preview.ready():
            self.previews += 1
            self._on_preview(step, total, image)

    def callbacks(self) -> dict[str, Any]:
        """The keyword arguments that connect `PipelineManager.run` (or a remote one) to this run."""
        return {"on_step": self.on_step, "should_stop": self.should_stop, "on_preview": self.on_preview}

    def observed(self, manager: Any) -> Any:
        """``manager`` with every ``run`` reporting to this run: lets helpers that call ``manager.run``
        themselves (`nbinpaint.weighting.compare`) show progress and honour Cancel."""
        return _Observed(manager, self)

    # -- the thread ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            if self._cancel.is_set():  # cancelled before the first step (while loading, say)
                raise GenerationCancelled("generation cancelled before it started.")
            self.result = self._job(self)
            self.status = "done"
        except GenerationCancelled as error:
            self.status, self.error = "cancelled", error
            self.message = f"Cancelled after {self.steps} step{'s' if self.steps != 1 else ''}; ready for the next run."
        except BaseException as error:  # shown in the panel; the thread must end cleanly whatever happened
            self.status, self.error = "failed", error
            self.message = error_message(error)
            self.traceback = traceback.format_exc()
        finally:
            self.finished = self._clock()
            try:
                if self._on_finish is not None:
                    self._on_finish(self)
            except Exception:  # a broken view must not leave the run unfinished
                log.exception("finish callback of %s failed", self.label)
            finally:
                self._done.set()


class _Observed:
    """A manager whose ``run`` reports to one `GenerationRun`; everything else goes to the real manager."""

    def __init__(self, manager: Any, run: GenerationRun) -> None:
        self._manager = manager
        self._run = run

    def run(self, request: Any, **kwargs: Any) -> Any:
        return self._manager.run(request, **self._with_callbacks(kwargs))

    def run_chain(self, requests: Any, **kwargs: Any) -> Any:
        return self._manager.run_chain(requests, **self._with_callbacks(kwargs))

    def _with_callbacks(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The run's callbacks, unless the caller passed its own (a None passed on is no callback of its own)."""
        return {**self._run.callbacks(), **{name: value for name, value in kwargs.items() if value is not None}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class GenerationController:
    """Runs one job at a time on a background thread; a second `start` while one runs raises `GenerationBusy`.

    Parameters
    ----------
    manager:
        The pipeline manager; None looks up the kernel's shared one at every run (so a workshop's remote
        manager set later is used).
    progress_interval, preview_interval:
        Least seconds between two progress (two preview) callbacks; the last step is always reported.
    clock:
        Time source, for tests.
    """

    def __init__(
        self,
        manager: Any = None,
        *,
        progress_interval: float = 0.05,
        preview_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self._clock = clock
        self._lock = threading.Lock()
        self.current: GenerationRun | None = None

    @property
    def manager(self) -> Any:
        if self._manager is not None:
            return self._manager
        from nbinpaint.session import shared_manager

        return shared_manager()

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.done

    def start(
        self,
        job: Job,
        *,
        label: str = "generation",
        on_progress: ProgressCallback | None = None,
        on_preview: PreviewCallback | None = None,
        on_finish: FinishCallback | None = None,
    ) -> GenerationRun:
        """Run ``job(run)`` on a new thread and return the run at once.

        ``job`` receives the `GenerationRun` and passes ``run.callbacks()`` to ``manager.run``. Callbacks are
        called on the worker thread. Raises `GenerationBusy` while the previous run is still going.
        """
        with self._lock:
            self.check_idle()
            run = GenerationRun(
                job,
                label=label,
                on_progress=on_progress,
                on_preview=on_preview,
                on_finish=on_finish,
                progress_interval=self.progress_interval,
                preview_interval=self.preview_interval,
                clock=self._clock,
            )
            self.current = run
            _runs.add(run)
            run.thread = start_thread(run._work, f"nbinpaint-{label}")
        return run

    def check_idle(self) -> None:
        """Raise `GenerationBusy` (saying which step the running run is at) unless the controller is idle."""
        running = self.current
        if running is not None and not running.done:
            where = f" (step {running.steps}/{running.total})" if running.total else ""
            raise GenerationBusy(
                f"a {running.label} is already running in this studio{where}: wait for it to finish, "
                "or press Cancel and then Generate again."
            )

    def generate(
        self,
        request: Any,
        *,
        recipe_extra: Mapping[str, Any] | None = None,
        preview_every: int | None = None,
        **callbacks: Any,
    ) -> GenerationRun:
        """`start` a plain ``manager.run(request)``; ``callbacks`` are `start`'s ``on_*`` arguments.

        ``preview_every=None`` lets the engine adapt the preview period to the steps actually run
        (``int(steps * strength)``).
        """
        manager = self.manager

        def job(run: GenerationRun) -> Any:
            return manager.run(request, preview_every=preview_every, recipe_extra=recipe_extra, **run.callbacks())

        return self.start(job, **callbacks)

    def cancel(self) -> bool:
        """Cancel the current run; False when none is running."""
        run = self.current
        return run.cancel() if run is not None else False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run to finish; True when none is left running."""
        run = self.current
        return True if run is None else run.wait(timeout)
