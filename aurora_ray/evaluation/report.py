"""The evaluation report: Markdown tables and PNG plots from the metrics of :mod:`runner`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = [
    "equal_precision",
    "headline_table",
    "oracle_ceiling",
    "replenishment_table",
    "write_report",
]


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def headline_table(results: dict[str, Any]) -> str:
    rows = [
        "| method | threshold | alerts | precision | recall@24h | median lead (h) "
        "| Brier | log loss | ECE | dup/10K |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, res in results["methods"].items():
        cal = res["calibration"]
        for key, t in ((k, v) for k, v in res.items() if k.startswith("t")):
            rows.append(
                f"| {name} | {key[1:]} | {t['alerts']} | {_fmt(t['precision'])} "
                f"| {_fmt(t['recall_at_24h'])} | {_fmt(t['median_lead_h'], 1)} "
                f"| {_fmt(cal['brier'], 4)} | {_fmt(cal['log_loss'], 4)} | {_fmt(cal['ece'], 4)} "
                f"| {_fmt(t['duplicates_per_10k'], 1)} |"
            )
    return "\n".join(rows)


def _loop_table(results: dict[str, Any]) -> str:
    loop = results.get("closed_loop")
    if not loop:
        return "(closed loop not run)"
    rows = [
        "| alerting | stock-out episodes | reduction vs none | OOS SKU-days | lost units "
        "| expedite orders |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, o in loop.items():
        rows.append(
            f"| {name} | {o['stockout_episodes']} | {_fmt(100 * o['reduction_vs_none'], 1)} % "
            f"| {o['oos_sku_days']} | {o['lost_units']} | {o['expedite_orders']} |"
        )
    batch = loop.get("nightly-batch")
    aurora = loop.get("xgboost") or loop.get("aurora-analytic")
    if batch and aurora and batch["stockout_episodes"]:
        vs = 1 - aurora["stockout_episodes"] / batch["stockout_episodes"]
        rows.append("")
        rows.append(f"Aurora against the nightly batch: {_fmt(100 * vs, 1)} % fewer stock-outs.")
    return "\n".join(rows)


_REPLENISHMENT_LABELS = {
    "shop": "shop's own (s, S) policy",
    "expedite": "shop + expedite on Aurora's alerts",
    "classical-nightly": "nightly classical policy",
    "aurora": "Aurora's live recommendations",
    "perfect-foresight": "perfect foresight (ceiling)",
}


def _change(reduction: float | None) -> float | None:
    """A reduction of episodes as their change (0.35 -> -0.35)."""
    return None if reduction is None else 0.0 - reduction


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:+.1f} %"


def replenishment_table(rep: dict[str, Any]) -> str:
    """One row per method: what it achieved over the test period and what it cost."""
    rows = [
        "| method | service level | stock-out episodes | vs shop | OOS SKU-days | lost units "
        "| mean units on hand | vs shop | units ordered | orders placed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, o in rep["methods"].items():
        level = o.get("service_level")
        rows.append(
            f"| {name} | {'' if level is None else level} | {o['stockout_episodes']:,} "
            f"| {_pct(_change(o.get('reduction_vs_shop')))} "
            f"| {o['oos_sku_days']:,} | {o['lost_units']:,} | {o['mean_on_hand']:,.0f} "
            f"| {_pct(o.get('on_hand_vs_shop'))} | {o['units_ordered']:,} "
            f"| {o['orders_placed']:,} |"
        )
    return "\n".join(rows)


def _frontier_table(rep: dict[str, Any]) -> list[str]:
    frontier = rep.get("frontier")
    if not frontier:
        return []
    lines = [
        "| service level | classical: episodes | mean on hand | Aurora: episodes | mean on hand |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    classical = {p["service_level"]: p for p in frontier["classical-nightly"]}
    aurora = {p["service_level"]: p for p in frontier["aurora"]}
    for level in sorted(set(classical) | set(aurora)):
        cells = [str(level)]
        for point in (classical.get(level), aurora.get(level)):
            cells += (
                [f"{point['stockout_episodes']:,}", f"{point['mean_on_hand']:,.0f}"]
                if point
                else ["", ""]
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _replenishment_lines(results: dict[str, Any]) -> list[str]:
    rep = results.get("replenishment")
    if not rep:
        return []
    methods = rep["methods"]
    acc = rep["acceptance"]
    shop = methods["shop"]
    met = "**met**" if acc["target_met"] else "**not met**"
    lines = [
        "## Replenishment: the closed loop judges the action",
        "",
        "The shop's own policy runs the warm-up; from the start of the test period each "
        "method places the purchase orders instead (`shop` and `expedite` keep the shop's "
        "policy). Decisions are hourly, on the stream only (at most an hour late); "
        "`classical-nightly` plans once a day after the 05:00 review. Mean units on hand: "
        "summed over the SKUs, time-weighted over the test period. "
        f"Service level {rep['service_level']}; Aurora: review period "
        f"{_fmt(rep['aurora_params']['review_period_days'], 1)} d, demand half-life "
        f"{_fmt(rep['aurora_params']['replenish_half_life_days'], 1)} d; classical: "
        f"{rep['classical']['model']} over {rep['classical']['window_days']} days, review "
        f"period {_fmt(float(rep['classical']['review_period_days']), 1)} d.",
        "",
        replenishment_table(rep),
        "",
        f"- Target (−{100 * acc['target_reduction']:.0f} % episodes against the shop's policy "
        f"with at most +{100 * acc['inventory_allowance']:.0f} % units on hand): {met}. "
        f"Aurora: {_pct(_change(acc['reduction']))} "
        f"episodes at {_pct(acc['on_hand_vs_shop'])} units on hand "
        f"(shop: {shop['stockout_episodes']:,} episodes, {shop['mean_on_hand']:,.0f} units).",
        f"- Ceiling (perfect foresight: every future order line known, orders just in time): "
        f"{_pct(_change(acc['ceiling_reduction']))} "
        f"episodes at {methods['perfect-foresight']['mean_on_hand']:,.0f} units on hand "
        f"({_pct(methods['perfect-foresight']['on_hand_vs_shop'])}); what it cannot avoid "
        "are the stock-outs in the first lead time after it takes over, from the shop's stock.",
    ]
    versus = acc.get("aurora_below_classical")
    if versus:
        if versus["holds"] is None:
            verdict = "the two frontiers share no inventory level"
        else:
            rows = versus["comparisons"]
            worst = max(rows, key=lambda r: r["ours"] / r["theirs"] if r["theirs"] else 1.0)
            lower = sum(r["ours"] < r["theirs"] for r in rows)
            verdict = (
                f"{'holds' if versus['holds'] else 'does not hold'} over "
                f"{versus['overlap'][0]:,.0f}–{versus['overlap'][1]:,.0f} units on hand "
                f"(Aurora lower at {lower} of {len(rows)} comparisons; least favourable to "
                f"Aurora: {worst['ours']:,.0f} against {worst['theirs']:,.0f} episodes at "
                f"{worst['mean_on_hand']:,.0f} units)"
            )
        lines.append(
            f"- Frontier: Aurora has fewer episodes than the nightly classical policy at every "
            f"inventory level both reach: {verdict}."
        )
        best = acc.get("best_aurora_within_allowance")
        if best:
            lines.append(
                f"- Along Aurora's frontier, within the inventory allowance: service level "
                f"{best['service_level']} gives {best['stockout_episodes']:,} episodes "
                f"({_pct(_change(best['reduction_vs_shop']))}) at {_pct(best['on_hand_vs_shop'])} "
                "units on hand."
            )
        lines += ["", *_frontier_table(rep)]
    return [*lines, ""]


def _frontier_plot(rep: dict[str, Any], out_dir: Path) -> str | None:
    import matplotlib.pyplot as plt

    methods = rep["methods"]
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, points in (rep.get("frontier") or {}).items():
        pts = sorted(points, key=lambda p: p["mean_on_hand"])
        ax.plot(
            [p["mean_on_hand"] for p in pts],
            [p["stockout_episodes"] for p in pts],
            "o-",
            label=f"{_REPLENISHMENT_LABELS.get(name, name)} (service levels)",
        )
        for p in pts:
            ax.annotate(
                str(p["service_level"]),
                (p["mean_on_hand"], p["stockout_episodes"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    markers = {"shop": "ks", "expedite": "k^", "perfect-foresight": "r*"}
    for name, outcome in methods.items():
        style = markers.get(name, "D")
        ax.plot(
            outcome["mean_on_hand"],
            outcome["stockout_episodes"],
            style,
            ms=10 if name == "perfect-foresight" else 7,
            label=_REPLENISHMENT_LABELS.get(name, name)
            + ("" if name in markers else f" at {outcome.get('service_level')}"),
        )
    shop = methods["shop"]
    acc = rep["acceptance"]
    ax.axvline(
        shop["mean_on_hand"] * (1 + acc["inventory_allowance"]),
        color="grey",
        ls=":",
        label=f"shop's inventory +{100 * acc['inventory_allowance']:.0f} %",
    )
    ax.axhline(
        shop["stockout_episodes"] * (1 - acc["target_reduction"]),
        color="grey",
        ls="--",
        label=f"shop's episodes −{100 * acc['target_reduction']:.0f} %",
    )
    ax.set(
        xlabel="mean units on hand (test period, all SKUs)",
        ylabel="stock-out episodes (test period)",
        title="Replenishment: stock-outs against inventory",
    )
    ax.legend(fontsize=7)
    fig.savefig(out_dir / "frontier.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "frontier.png"


def _plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    methods = results["methods"]

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    for name, res in methods.items():
        rel = res["calibration"]["reliability"]
        pts = [
            (p, o)
            for p, o in zip(rel["mean_predicted"], rel["observed"], strict=True)
            if p == p and o == o
        ]
        ax.plot([p for p, _ in pts], [o for _, o in pts], "o-", label=name)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Reliability")
    ax.legend()
    fig.savefig(out_dir / "reliability.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    made.append("reliability.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in methods.items():
        leads = res.get("t0.7", {}).get("lead_times_h", [])
        if leads:
            ax.hist(leads, bins=range(0, 50, 2), alpha=0.5, label=name)
    ax.set(xlabel="lead time (h) of the first alert before a stock-out", ylabel="episodes")
    ax.set_title("Lead times at threshold 0.7")
    ax.legend()
    fig.savefig(out_dir / "lead_times.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    made.append("lead_times.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, res in methods.items():
        pr = res["pr_curve"]
        ax.plot(pr["recall"], pr["precision"], "o-", ms=3, label=name)
    for res in results.get("reference", {}).values():
        pr = res["pr_curve"]
        ax.plot(pr["recall"], pr["precision"], "k--", ms=3, label=res["label"])
    ax.set(xlabel="recall@24h", ylabel="precision", title="Precision / recall over thresholds")
    ax.legend()
    fig.savefig(out_dir / "precision_recall.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    made.append("precision_recall.png")

    loop = results.get("closed_loop")
    if loop:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(loop)
        ax.bar(names, [loop[n]["stockout_episodes"] for n in names])
        ax.set(ylabel="stock-out episodes (test period)", title="Closed loop: stock-outs")
        fig.savefig(out_dir / "stockouts.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        made.append("stockouts.png")
    rep = results.get("replenishment")
    if rep:
        frontier = _frontier_plot(rep, out_dir)
        if frontier:
            made.append(frontier)
    return made


def _pipeline_lines(results: dict[str, Any]) -> list[str]:
    check = results.get("through_pipeline")
    if not check:
        return []
    verdict = "agree on every alert" if check["agree"] else "DISAGREE"
    return [
        "## Through the pipeline (HTTP → Kafka → shards → Redis)",
        "",
        f"{check['events']} events sent in {check['sent_s']:.1f} s and scored after "
        f"{check['scored_s']:.1f} s. Offline replay {check['offline']} alerts, live system "
        f"{check['live']}, matched {check['matched']}: they {verdict}.",
        "",
    ]


def recall_at_precision(curve: dict[str, Any], target: float, key: str = "recall") -> float:
    """Best recall among the curve's thresholds whose precision is at least ``target``."""
    qualifying = [
        recall
        for precision, recall in zip(curve["precision"], curve.get(key) or [], strict=False)
        if recall is not None and precision is not None and precision >= target
    ]
    return max(qualifying, default=float("nan"))


def _precision_levels(batch: dict[str, Any]) -> list[float]:
    """The batch's best precision at any threshold, and 0.05 and 0.1 below it."""
    best = max((p for p in batch["pr_curve"]["precision"] if p == p), default=float("nan"))
    return sorted({round(best - 0.1, 2), round(best - 0.05, 2), best})


def equal_precision(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each method's recall@24h against the nightly batch's, at the batch's best precision
    and at lower precision levels (all episodes, and the drain-announced ones). Reference
    methods (``results["reference"]``, e.g. the rate oracle) follow under their label."""
    methods = results["methods"]
    batch = methods.get("nightly-batch")
    if batch is None:
        return []
    compared = {**methods, **results.get("reference", {})}
    rows = []
    for level in _precision_levels(batch):
        for name, method in compared.items():
            if name == "nightly-batch":
                continue
            row: dict[str, Any] = {
                "precision_at_least": level,
                "method": method.get("label", name),
            }
            for key in ("recall", "recall_drain"):
                ours = recall_at_precision(method["pr_curve"], level, key)
                theirs = recall_at_precision(batch["pr_curve"], level, key)
                row[key] = ours
                row[f"batch_{key}"] = theirs
                row[f"ratio_{key}"] = ours / theirs if theirs and theirs == theirs else None
            rows.append(row)
    return rows


def _ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs and theirs == theirs and ours == ours else None


def oracle_ceiling(results: dict[str, Any]) -> list[dict[str, Any]]:
    """At each of the batch's precision levels: recall@24h of the batch, of Aurora's live
    scorer and of the rate oracle (the ceiling for a forecaster of the demand level), the
    ratios to the batch and Aurora's share of the oracle's recall; the same on the drain
    episodes. Empty without the oracle or the batch."""
    methods = results["methods"]
    batch = methods.get("nightly-batch")
    oracle = results.get("reference", {}).get("rate-oracle")
    if batch is None or oracle is None:
        return []
    aurora = methods.get("aurora-analytic")
    rows = []
    for level in _precision_levels(batch):
        row: dict[str, Any] = {"precision_at_least": level}
        for key, suffix in (("recall", ""), ("recall_drain", "_drain")):
            theirs = recall_at_precision(batch["pr_curve"], level, key)
            best = recall_at_precision(oracle["pr_curve"], level, key)
            live = recall_at_precision(aurora["pr_curve"], level, key) if aurora else float("nan")
            row[f"batch{suffix}"] = theirs
            row[f"aurora{suffix}"] = live
            row[f"oracle{suffix}"] = best
            row[f"oracle_ratio{suffix}"] = _ratio(best, theirs)
            row[f"aurora_ratio{suffix}"] = _ratio(live, theirs)
            row[f"aurora_share_of_oracle{suffix}"] = _ratio(live, best)
        rows.append(row)
    return rows


def _oracle_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("oracle_ceiling") or oracle_ceiling(results)
    oracle = results.get("reference", {}).get("rate-oracle")
    if oracle is None:
        return []
    lines = [
        "## The measured ceiling: a rate oracle",
        "",
        f"Reference, not a product method: **{oracle['label']}**. The live fold (stock, purchase "
        "orders and timers exactly as Aurora's) scored with Aurora's scorer, but with each SKU's "
        "demand rate and second moment *realised* over "
        f"[t − {_fmt(oracle['window_days'], 0)} d, t) ∪ [t + H, t + H + "
        f"{_fmt(oracle['window_days'], 0)} d): it knows the future demand level, not the "
        "orders inside the horizon. Its recall is what a forecaster of the demand level can "
        "reach on this data.",
        "",
        headline_table({"methods": {oracle["label"]: oracle}}),
        "",
    ]
    if not rows:
        return lines
    lines += [
        "| precision ≥ | batch | aurora-analytic | ratio | rate oracle | ratio | aurora / oracle "
        "| drain: batch | aurora | oracle | oracle ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_fmt(r['precision_at_least'], 2)} | {_fmt(r['batch'])} | {_fmt(r['aurora'])} "
            f"| {_fmt(r['aurora_ratio'], 2)} | {_fmt(r['oracle'])} "
            f"| {_fmt(r['oracle_ratio'], 2)} | {_fmt(r['aurora_share_of_oracle'], 2)} "
            f"| {_fmt(r['batch_drain'])} | {_fmt(r['aurora_drain'])} | {_fmt(r['oracle_drain'])} "
            f"| {_fmt(r['oracle_ratio_drain'], 2)} |"
        )
    top = rows[-1]
    ratio = top["oracle_ratio"]
    if ratio is not None:
        verdict = (
            "below 2×: the 2× target lies above what a forecaster of the demand level can reach "
            "on this data"
            if ratio < 2
            else "at least 2×: the data allows the 2× target, and Aurora has headroom"
        )
        lines += [
            "",
            f"At the batch's best precision ({_fmt(top['precision_at_least'], 2)}) the oracle "
            f"reaches {_fmt(ratio, 2)}× the batch's recall@24h, {verdict}. Aurora's live "
            f"scorer reaches {_fmt(top['aurora_share_of_oracle'], 2)} of the oracle's recall "
            "there.",
        ]
    return [*lines, ""]


def _equal_precision_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| precision ≥ | method | recall@24h | batch | ratio | recall@24h, drain episodes "
        "| batch | ratio |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_fmt(r['precision_at_least'], 2)} | {r['method']} | {_fmt(r['recall'])} "
            f"| {_fmt(r['batch_recall'])} | {_fmt(r['ratio_recall'], 2)} "
            f"| {_fmt(r['recall_drain'])} | {_fmt(r['batch_recall_drain'])} "
            f"| {_fmt(r['ratio_recall_drain'], 2)} |"
        )
    return "\n".join(lines)


def _inbound_lines(results: dict[str, Any]) -> list[str]:
    sent = results.get("purchase_orders", False)
    if sent:
        lines = [
            "The stream carried the shop's purchase orders (`stock.ordered`, see ADR-005). "
            "Alerts not followed by a stock-out although a delivery already ordered landed "
            "within the horizon:",
            "",
        ]
    else:
        lines = [
            "Alerts that were wrong only because a delivery was already on its way: this run's "
            "stream carried no purchase orders (`--no-purchase-orders`), so no method knew.",
            "",
        ]
    for name, method in results["methods"].items():
        scored = method.get("t0.7", {})
        if "false_alerts" not in scored:
            continue
        lines.append(
            f"- {name} at 0.7: {scored['false_alerts']} in-stock alerts were not followed by a "
            f"stock-out; {scored['false_alerts_with_delivery_in_transit']} of them had a "
            "delivery already ordered that landed within the horizon. Precision if those "
            f"counted as right: {_fmt(scored['precision_if_inbound_known'])} "
            f"(measured {_fmt(scored['precision'])})."
        )
    return lines


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    plots = _plots(results, out_dir)
    sim = results["simulation"]
    lines = [
        "# Aurora evaluation",
        "",
        f"Data `{results['data']}`; test period from {results['test_from']}; horizon "
        f"{results['horizon_h']:.0f} h; {results['skus']} SKUs in scope; {results['events']} "
        f"events; {results['test_episodes']} stock-out episodes start in the test period "
        f"({_fmt(100 * sim['rate'], 2)} % of SKU-days out of stock).",
        "",
        "## Alerts and calibration (test period)",
        "",
        headline_table(results),
        "",
        "Precision counts alerts raised while in stock; alerts raised when already out of stock "
        "are listed in metrics.json (`alerts_while_out_of_stock`). Calibration samples every "
        "in-stock SKU-hour with the latest probability the method showed.",
        "",
        "## What the stream cannot announce",
        "",
        *[
            f"- {100 * v:.1f} % of the test-period stock-outs were "
            f"{k.replace('_', ' ').replace('x horizon demand', '× the mean demand of a horizon')}"
            for k, v in results.get("ceiling", {}).items()
        ],
        "",
        "A single order line that empties a shelf holding days of average demand gives no "
        "drain signal beforehand; such episodes bound recall@24h for any method that sees only "
        "the stream. The *drain episodes* below are the others (emptied by no line over 1× a "
        "horizon's mean demand).",
        "",
        *_inbound_lines(results),
        "",
        "## Against the nightly batch at equal precision",
        "",
        "Best recall@24h among thresholds whose precision is at least the level, from the "
        "precision-recall curves (thresholds 0.05 to 0.95); the top level is the best precision "
        "the batch reaches at any threshold.",
        "",
        _equal_precision_table(results.get("equal_precision") or equal_precision(results)),
        "",
        *_oracle_lines(results),
        *_pipeline_lines(results),
        "## Closed loop (expedite on every alert at p >= 0.7)",
        "",
        _loop_table(results),
        "",
        *_replenishment_lines(results),
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
