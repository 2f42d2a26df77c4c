"""The figures of a search report (matplotlib, Agg): search path, fitness vs params, macro trajectory,
micro decisions per layer, and the epoch curves of every trial."""

from __future__ import annotations

from nas_core.report.document import figure_png, pyplot
from nas_core.report.run import SearchRun, Trial, trained

# Algorithm 1's phases as the paper names them; the journal's phase names are the keys.
PHASE_NAMES = {
    "depth": "grow",
    "width": "prune",
    "micro_base": "micro baseline",
    "ops": "op",
    "kernels": "kernel",
}
PHASE_COLORS = {
    "depth": "#1f77b4",
    "width": "#ff7f0e",
    "micro_base": "#7f7f7f",
    "ops": "#2ca02c",
    "kernels": "#d62728",
    None: "#bcbd22",
}


def phase_name(phase: str | None) -> str:
    return PHASE_NAMES.get(phase, phase or "unknown")


def _phase_legend(ax, phases, **where) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=PHASE_COLORS.get(p, PHASE_COLORS[None]),
            label=phase_name(p),
        )
        for p in phases
    ]
    ax.legend(handles=handles, fontsize=8, **(where or {"loc": "best"}))


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _phases_in(trials: list[Trial]) -> list[str | None]:
    seen: list[str | None] = []
    for t in trials:
        if t.phase not in seen:
            seen.append(t.phase)
    return seen


def search_path(run: SearchRun) -> bytes:
    """Fitness per trial in search order, by phase; accepted steps joined; the current best starred."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    path = trained(run.path)  # candidates over a deployment budget have no fitness
    for t in path:
        color = PHASE_COLORS.get(t.phase, PHASE_COLORS[None])
        ax.scatter(
            t.index,
            t.fitness,
            s=34 if t.accepted else 22,
            color=color,
            edgecolors="black" if t.accepted else "none",
            linewidths=0.8,
            alpha=1.0 if t.accepted else 0.7,
            zorder=3,
        )
    steps = [t for t in path if t.accepted]
    if steps:
        ax.plot(
            [t.index for t in steps],
            [t.fitness for t in steps],
            color="black",
            linewidth=1.2,
            label="accepted steps",
            zorder=2,
        )
    best = run.best()
    if best is not None:
        ax.scatter(
            best.index,
            best.fitness,
            marker="*",
            s=260,
            color="gold",
            edgecolors="black",
            zorder=4,
            label=("result" if run.finished else "best so far") + f": trial {best.index}",
        )
    ax.set_xlabel("trial (search order)")
    ax.set_ylabel("fitness (%)")
    ax.grid(alpha=0.3)
    _integer_axis(ax.xaxis)
    # Outside the axes: inside, a legend would hide the latest trials, where a live search's news is.
    _phase_legend(ax, _phases_in(path), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if steps or best is not None:
        ax.add_artist(ax.get_legend())
        ax.legend(loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8)
    return figure_png(fig)


def pareto_front(trials: list[Trial]) -> list[Trial]:
    """Trials no other trial beats on both counts (fewer or equal params and higher or equal fitness)."""
    front, best = [], float("-inf")
    for t in sorted(trials, key=lambda t: (t.params, -t.fitness)):
        if t.fitness > best:
            front.append(t)
            best = t.fitness
    return front


def fitness_vs_params(run: SearchRun, result_key: str | None) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    trials = [t for t in trained(run.lines) if t.params > 0]
    for phase in _phases_in(trials):
        group = [t for t in trials if t.phase == phase]
        ax.scatter(
            [t.params for t in group],
            [t.fitness for t in group],
            s=24,
            alpha=0.8,
            color=PHASE_COLORS.get(phase, PHASE_COLORS[None]),
            label=phase_name(phase),
        )
    speculative = [t for t in trials if t.speculative]
    if speculative:
        ax.scatter(
            [t.params for t in speculative],
            [t.fitness for t in speculative],
            s=70,
            facecolors="none",
            edgecolors="purple",
            label="speculative",
        )
    front = pareto_front(trials)
    if front:
        ax.step(
            [t.params for t in front],
            [t.fitness for t in front],
            where="post",
            color="black",
            linewidth=1,
            label="Pareto front",
        )
    chosen = [t for t in trials if t.genotype.key() == result_key]
    if chosen:
        top = max(chosen, key=lambda t: t.fitness)
        ax.scatter(
            top.params,
            top.fitness,
            marker="*",
            s=260,
            color="gold",
            edgecolors="black",
            zorder=4,
            label="result" if run.finished else "best so far",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("fitness (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return figure_png(fig)


def macro_trajectory(run: SearchRun) -> bytes:
    """Depth and width of every trial, accepted ones filled."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True)
    for ax, what in ((top, "depth"), (bottom, "width")):
        xs = [t.index for t in run.path]
        ys = [getattr(t.genotype, what) for t in run.path]
        ax.plot(xs, ys, color="#999", linewidth=0.8, zorder=1)
        for t, y in zip(run.path, ys):
            color = PHASE_COLORS.get(t.phase, PHASE_COLORS[None])
            if t.over_budget:  # a candidate over a deployment budget: not trained
                ax.scatter(t.index, y, s=30, zorder=2, marker="x", color=color)
            else:
                ax.scatter(t.index, y, s=26, zorder=2, color=color if t.accepted else "white", edgecolors=color)
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        _integer_axis(ax.xaxis)
        _integer_axis(ax.yaxis)
    _phase_legend(top, _phases_in(run.path))
    bottom.set_xlabel("trial (search order); filled = accepted, x = over budget (not trained)")
    return figure_png(fig)


_CELL = {"not tried": 0, "rejected": 1, "accepted": 2}


def micro_map(run: SearchRun) -> bytes:
    """Per layer: whether the op (conv) and the kernel (5) were tried, and accepted."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    micro = [t for t in run.path if t.phase in ("ops", "kernels") and t.layer is not None]
    depth = max([t.genotype.depth for t in run.path] or [1])
    if micro:
        depth = micro[0].genotype.depth
    grid = [[_CELL["not tried"]] * depth for _ in range(2)]
    labels = [[""] * depth for _ in range(2)]
    for t in micro:
        row = 0 if t.phase == "ops" else 1
        if t.layer < depth:
            grid[row][t.layer] = _CELL["accepted" if t.accepted else "rejected"]
            labels[row][t.layer] = t.genotype.ops[t.layer][0] + str(t.genotype.kernels[t.layer])
    colors = ["#eeeeee", "#f4a6a6", "#7fc97f"]
    fig, ax = plt.subplots(figsize=(min(2 + 0.42 * depth, 22), 2.4))
    ax.imshow(grid, cmap=ListedColormap(colors), vmin=0, vmax=2, aspect="auto")
    for row in range(2):
        for layer in range(depth):
            if labels[row][layer]:
                ax.text(layer, row, labels[row][layer], ha="center", va="center", fontsize=7)
    ax.set_yticks([0, 1], ["op: conv", "kernel: 5"])
    ax.set_xticks(range(depth), [str(i) for i in range(depth)], fontsize=7)
    ax.set_xlabel("layer")
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in zip(_CELL, colors)],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    if not micro:
        ax.set_title(
            "no micro trials yet" if not run.finished else "no micro trials (macro only)", fontsize=9
        )
    return figure_png(fig)


def epoch_curves(run: SearchRun) -> bytes:
    """Fitness after every epoch of every trial, and the epochs each trial trained (dynamic learning)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for t in run.path:
        if t.epoch_accuracies:
            epochs = range(1, len(t.epoch_accuracies) + 1)
            left.plot(
                epochs,
                t.epoch_accuracies,
                color=PHASE_COLORS.get(t.phase, PHASE_COLORS[None]),
                linewidth=1.4 if t.accepted else 0.8,
                alpha=0.9 if t.accepted else 0.45,
                marker="o" if len(t.epoch_accuracies) == 1 else None,
                markersize=3,
            )
    left.set_xlabel("epoch")
    left.set_ylabel("fitness (%)")
    left.grid(alpha=0.3)
    _integer_axis(left.xaxis)
    _phase_legend(left, _phases_in(run.path))
    done = trained(run.path)
    right.bar(
        [t.index for t in done],
        [t.epochs for t in done],
        color=[PHASE_COLORS.get(t.phase, PHASE_COLORS[None]) for t in done],
    )
    right.set_xlabel("trial (search order)")
    right.set_ylabel("epochs trained")
    right.grid(alpha=0.3, axis="y")
    _integer_axis(right.xaxis)
    _integer_axis(right.yaxis)
    return figure_png(fig)
