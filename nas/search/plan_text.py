"""The dry-run plan (:func:`nas.search.plan.make_plan`) as a few readable lines."""

from __future__ import annotations

from typing import Any

from ..evaluate.candidates import fmt_count


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a few readable lines."""
    lines = []
    s, d, sp = plan["study"], plan["data"], plan["space"]
    lines.append(f"study {s['name']}" + (f"  ({s['source']})" if s["source"] else ""))
    where = (f" at {d['where']}" if str(d["where"]).startswith("/")
             else f" ({d['where']})" if d["where"] else "")
    state = "present" if d["present"] else "MISSING"
    sizes = (f"{d['train']} train / {d['val']} val images (sizes: {d['sizes']})"
             if d["train"] is not None else f"sizes {d['sizes']}")
    lines.append(f"data      {d['dataset']}{where}: {state}; {sizes}")
    if not d["present"]:
        lines.append(f"          {d['message']}")
    lines.append(f"space     {sp['size']:,} architectures; blocks per stage: "
                 f"{'; '.join('/'.join(b) for b in sp['blocks'])}")
    lines.append(f"          {sp['sampled']} sampled: params "
                 f"{fmt_count(sp['params']['min'])}-{fmt_count(sp['params']['max'])}, "
                 f"MACs/image {fmt_count(sp['macs']['min'])}-{fmt_count(sp['macs']['max'])}, "
                 f"est. training memory {sp['train_memory_mb']['min']:.3g}-"
                 f"{sp['train_memory_mb']['max']:.3g} MiB; "
                 f"{sp['analytically_feasible']} pass the analytic limits")
    objectives = ", ".join(f"{o['direction']} {o['metric']}" for o in plan["objectives"])
    lines.append(f"objective {objectives}")
    limits = ", ".join(f"{k} <= {v:g}" for k, v in plan["constraints"].items()) or "none"
    lines.append(f"limits    {limits}")
    start = plan.get("start_from", [])
    if start:
        lines.append(f"start     {', '.join(b.removeprefix('zoo:') for b in start)} "
                     "(baselines in the space: every search evaluates them first and "
                     "tells the sampler)")
    others = [b.removeprefix("zoo:") for b in plan["baselines"] if b not in start]
    if others:
        lines.append(f"baselines {', '.join(others)} (evaluated with --with-baselines)")
    b = plan["budget"]
    if b is None:
        lines.append("budget    none given")
    else:
        spent = f" ({b['spent']:.4g} spent, {b['left']:.4g} left)" if b.get("spent") else ""
        lines.append(f"budget    {b['text']} = {b['limit']:.4g} {b['unit']} of "
                     f"{b['kind']} time{spent}" if b["kind"] != "trials"
                     else f"budget    {b['text']}{spent}")
    f = plan["fidelity"]
    lines.append(f"fidelity  {f['epochs']} epochs"
                 + (f", ASHA grace {f['grace_epochs']} reduction {f['reduction_factor']:g}"
                    if f["scheduler"] == "asha" else ", no early stopping"))
    dev, m = plan["device"], plan["measurement"]
    if plan.get("profile"):
        lines.append(f"priced    with device profile {plan['profile']['path']}: "
                     f"{plan['profile']['describe']}")
    if m is not None and m.get("source") == "device profile":
        lines.append(f"predicted {m['spec']} {m['step_s']:.3g} s per training step at batch "
                     f"{m['batch']}, ~{m['latency_ms']:.3g} ms latency (profile, not timed "
                     "here)")
    elif m is not None:
        lines.append(f"measured  on {dev['name']} ({dev['type']}, {m['precision']}): "
                     f"{m['spec']} {m['step_s']:.3g} s per training step at batch "
                     f"{m['batch']}, {m['latency_ms']:.3g} ms latency")
    t = plan["trial"]
    if t is not None:
        sp = t["step_s_spread"]
        lines.append(f"trial     {t['steps_priced']} candidate(s) priced: "
                     f"{sp['min']:.3g}-{sp['max']:.3g} s per step at the training batch, "
                     f"mean {t['step_s']:.3g} s")
        lines.append(f"          mean trial: {t['steps_per_epoch']} steps/epoch, "
                     f"{t['epoch_s']:.3g} s/epoch, checks {t['checks_s']:.2g} s; "
                     f"full {fmt_duration(t['full_s'])}, expected {fmt_duration(t['expected_s'])} "
                     f"({t['expected_epochs']:.3g} epochs, "
                     f"{t['feasible_share']:.0%} trained)")
    r = plan["resources"]
    pt = r["per_trial"]
    gpu = "auto (decided at search start)" if pt.get("gpu") is None else f"{pt['gpu']:g}"
    lines.append(f"resources {pt['cpu']:g} CPU + {gpu} GPU per trial "
                 f"({pt['source']}), concurrency {r['concurrency']}, {r['parallel']} at "
                 f"once on {r['address']}; storage {r['storage']}")
    first = plan.get("first_evaluated", [])
    for f in first:
        cost = (f"not priced: {f['problem']}" if "problem" in f
                else f"full training ~{fmt_duration(f['trained_s'])}" if "trained_s" in f
                else "not priced")
        beyond = "; beyond the budget: not run" if f.get("within_budget") is False else ""
        lines.append(f"first     {f['ref'].removeprefix('zoo:')} ({f['as']}): {cost}{beyond}")
    n = plan["expected_trials"]
    if n is not None:
        wall = t.get("expected_wall_s_total") if t else None
        k = t.get("first_admitted", len(first)) if t else len(first)
        split = (f": the {k} evaluated first (~{fmt_duration(t['first_evaluated_s'])})"
                 f", then ~{t['proposed_trials']} proposed" if first and t else "")
        lines.append(f"expect    ~{n} trials within the budget{split}"
                     + (f" (~{fmt_duration(wall)} of wall time)" if wall else "")
                     + "  [estimate]")
    for note in plan.get("notes", []):
        lines.append(f"note      {note}")
    for w in plan["warnings"]:
        lines.append(f"warning   {w}")
    return "\n".join(lines)


def fmt_big(n: float) -> str:
    return f"{n:,.0f}" if n < 1e9 else f"{n:.3g}"


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
