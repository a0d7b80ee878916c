"""Issue 18, item 1: items x caps x delivery policy -> 429s, attempts used and dead letters at the cap,
from the message-level model (infra/delivery_sim.py), next to what the deploy rule's bound says
(infra/capacity.py). A pure simulation: no stack, no emulator.

    PYTHONPATH=. .venv/bin/python bench/capacity.py

Writes bench/results/capacity-<utc>.json, capacity-<utc>.md (the table) and capacity-<utc>.png (dead
letters by batch size, per cap), and prints the table. Caps: this repository's stacks (prod 20 x 5, its
emergency profile 4 x 3, dev 5 x 2); 2 s per item (batchline:capacity.worker_item_s); Cloud Run holds a
request 10 s at the cap before answering 429. Arrivals: "burst" = the whole batch at once (a dispatch
before pacing, a redispatch, a replay, a backlog after an outage); "paced" = batchline/domain/pacing.py's rate
(slots / 2 s, raised to fit 324 s, the prod start's budget). Two delivery models: "worst" (every retry
of the refused arrives together, backoff exactly as configured, no push flow control: the bound's own
assumptions) and "spread" (retry delays and item times jittered +-50%, and a push window that starts at
3 and grows by one per success, halves per failure: an assumption about Pub/Sub's undocumented flow
control, to show its direction, not its size).
"""

from __future__ import annotations

import itertools
import sys
import time

from common import RESULTS_DIR, git_rev, machine, utc_now, write_json

from infra import capacity
from infra.delivery_sim import Scenario, simulate

CAPS = {"prod 20x5": 100, "emergency 4x3": 12, "dev 5x2": 10}
ITEMS = (100, 450, 1000, 2000, 5000)
ATTEMPTS = (5, 10, 20)
MIN_BACKOFF_S = (0, 10)
ITEM_S = 2.0
BUDGET_S = 324
MODELS = {"worst": {}, "spread": {"item_jitter": 0.5, "backoff_jitter": 0.5, "push_window": 3}}


def run_one(cap: str, items: int, attempts: int, backoff: int, arrival: str, model: str) -> dict:
    slots = CAPS[cap]
    rate = capacity.dispatch_rate(slots, ITEM_S)
    rate = max(rate, items / BUDGET_S) if arrival == "paced" else 0.0
    sc = Scenario(items=items, slots=slots, item_s=ITEM_S, attempts=attempts, min_backoff_s=backoff,
                  publish_rate=rate, seed=7, **MODELS[model])
    out = simulate(sc)
    needed = capacity.attempts_needed(items, slots, ITEM_S, backoff)
    return {"caps": cap, "slots": slots, "items": items, "attempts": attempts, "min_backoff_s": backoff,
            "arrival": arrival, "publish_rate": round(rate, 2), "model": model,
            "rejected_429": out.rejected_429, "dead_letters": out.dead_letters,
            "max_attempts_used": out.max_attempts_used, "drained_s": round(out.drained_s, 1),
            "bound_attempts_needed": needed, "bound_ok": needed is not None and needed <= attempts}


def table(rows: list[dict]) -> str:
    lines = ["| caps | items | attempts | min backoff s | arrival | model | 429s | dead letters | max attempts | "
             "drained s | bound: attempts needed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        need = "never" if x["bound_attempts_needed"] is None else x["bound_attempts_needed"]
        lines.append(f"| {x['caps']} | {x['items']} | {x['attempts']} | {x['min_backoff_s']} | {x['arrival']} | "
                     f"{x['model']} | {x['rejected_429']} | {x['dead_letters']} | {x['max_attempts_used']} | "
                     f"{x['drained_s']} | {need}{'' if x['bound_ok'] else ' (rule fails)'} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (make bench-install): no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, len(CAPS), figsize=(15, 4.5), sharey=True)
    for ax, cap in zip(axes, CAPS, strict=True):
        for (arrival, model, attempts), style in zip(
                [("burst", "worst", 5), ("burst", "worst", 10), ("burst", "spread", 10), ("paced", "worst", 10)],
                ["o-", "s-", "^--", "d:"], strict=True):
            pts = sorted((x["items"], 100 * x["dead_letters"] / x["items"]) for x in rows
                         if (x["caps"], x["arrival"], x["model"], x["attempts"], x["min_backoff_s"])
                         == (cap, arrival, model, attempts, 10))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{arrival}, {model}, {attempts} attempts")
        ax.set_xscale("log")
        ax.set_title(f"{cap} ({CAPS[cap]} slots, {ITEM_S:g} s/item)")
        ax.set_xlabel("items in the batch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("healthy items dead-lettered (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("429s at the instance cap: dead letters by batch size (min backoff 10 s, 10 s queue at the cap)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    t0 = time.perf_counter()
    rows = [run_one(*combo) for combo in itertools.product(CAPS, ITEMS, ATTEMPTS, MIN_BACKOFF_S, ("burst", "paced"),
                                                            MODELS)]
    at = utc_now()
    stamp = at.replace(":", "").replace("-", "")[:15]
    payload = {"kind": "capacity-model", "at": at, "commit": git_rev(), "machine": machine(),
               "item_s": ITEM_S, "queue_s": capacity.QUEUE_S, "budget_s": BUDGET_S, "models": MODELS,
               "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    write_json(f"capacity-{stamp}.json", payload)
    focus = [x for x in rows if x["min_backoff_s"] == 10 and x["attempts"] in (5, 10)]
    md = table(focus)
    (RESULTS_DIR / f"capacity-{stamp}.md").write_text(
        "# Dead letters at the instance cap (bench/capacity.py)\n\nMinimum backoff 10 s; the JSON has 0 s and "
        "20 attempts too.\n\n" + md)
    plot(rows, RESULTS_DIR / f"capacity-{stamp}.png")
    print(md)
    print(f"wrote {RESULTS_DIR}/capacity-{stamp}.{{json,md,png}} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
