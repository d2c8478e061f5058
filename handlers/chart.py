"""The /stats picture: members per group by role, and whether messages reach
families, per group.

Horizontal bars, so long group names stay readable and 20+ groups fit (the
picture grows with the number of groups); whole numbers on the count axis;
every bar labelled with its value; legends below the panels, never over bars;
the staff room only among members (families' posts do not go there); a group
with no posts says so instead of looking like 0 %.
"""

from __future__ import annotations

import io
import textwrap
from datetime import datetime
from typing import Any

from aiogram.utils.i18n import gettext as _

from bot.dates import when
from handlers.texts import role_name
from storage.models import GroupKind, Role

NAME_WIDTH = 28  # characters per line of a group's name
ROLE_COLOURS = {
    Role.ADMIN: "#6c757d", Role.HEAD: "#8e6cbf", Role.TEACHER: "#2a9d8f",
    Role.SPECIALIST: "#e9c46a", Role.PARENT: "#457b9d", Role.STUDENT: "#f4a261",
}
DELIVERED, ACKNOWLEDGED, MUTED = "#2a9d8f", "#e76f51", "#8a8a8a"


def _name(title: str) -> str:
    return "\n".join(textwrap.wrap(title, NAME_WIDTH, max_lines=2, placeholder="…")) or "—"


def stats_chart(data: dict[str, Any], title: str, now: datetime | None = None, zone: str | None = None) -> bytes:
    """The picture as PNG."""
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False, "font.size": 9}):
        fig = figure(data, title, now, zone)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
    return buffer.getvalue()


def figure(data: dict[str, Any], title: str, now: datetime | None = None, zone: str | None = None) -> Any:
    """The matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = data["rows"]
    classes = [r for r in rows if r.get("kind") != GroupKind.STAFF]
    n = max(len(rows), 1)
    height = min(max(4.0, 2.2 + 0.42 * n), 40)  # ~0.4 inch per group: 24 groups are about 12 inches tall
    # Names are people's text: "$...$" in a group's name is not mathematics.
    with plt.rc_context({"text.parse_math": False, "font.size": 9}):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), dpi=100)
        panel = height - TOP - BOTTOM
        _members(left, rows, MaxNLocator, Patch, panel)
        _reach(right, classes, Patch, panel)
        stamp = when(now, zone) if now is not None else ""
        fig.suptitle(title, y=1 - 0.15 / height, va="top", fontsize=13, fontweight="bold")
        fig.text(0.5, 1 - 0.5 / height, _("Members: today · posts and deliveries: since the start · as of {when}").format(
            when=stamp), ha="center", va="top", fontsize=9, color="#444444")
        _place(fig, (left, right), (rows, classes), height)
    return fig


# The margins, in inches: above the panels the title, the period line and the
# panels' own titles; below them the count axis and the legend. Fixed rather
# than found by tight_layout, which lays out every text of the picture once
# more before it is drawn (half of the chart's time with 40 groups).
TOP, BOTTOM, EDGE, GAP = 1.1, 0.8, 0.2, 0.15
LEGEND_DROP = 0.32  # the legend's top, below the panel (under the count axis' numbers)


def _place(fig: Any, axes: tuple[Any, Any], rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
           height: float) -> None:
    """Each panel in its half of the picture, after the widest of its group names."""
    from matplotlib.font_manager import FontProperties

    width, dpi = fig.get_size_inches()[0], fig.dpi
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=9)

    def names_width(panel_rows: list[dict[str, Any]]) -> float:
        lines = [line for r in panel_rows for line in _name(r["group"]).split("\n")]
        widths = [renderer.get_text_width_height_descent(line, font, ismath=False)[0] for line in lines]
        return max(widths, default=0) / dpi

    bottom, top = BOTTOM / height, 1 - TOP / height
    for k, (axis, panel_rows) in enumerate(zip(axes, rows)):
        start = k * width / 2 + EDGE + names_width(panel_rows) + GAP
        end = (k + 1) * width / 2 - EDGE
        axis.set_position((start / width, bottom, max(end - start, 1.0) / width, top - bottom))


def _members(axis: Any, rows: list[dict[str, Any]], locator: Any, patch: Any, panel: float) -> None:
    names = [_name(r["group"]) for r in rows]
    y = list(range(len(rows)))
    left = [0] * len(rows)
    shown = []
    for role in Role:
        values = [r["members"].get(role.value, 0) for r in rows]
        if any(values):
            axis.barh(y, values, left=left, color=ROLE_COLOURS[role], height=0.7)
            shown.append(role)
            left = [a + b for a, b in zip(left, values)]
    total_max = max(left, default=0) or 1
    for i, total in enumerate(left):
        axis.text(total + total_max * 0.01, i, str(total) if total else _("nobody"), va="center", fontsize=8,
                  color="black" if total else MUTED)
    axis.set_yticks(y, names)
    axis.invert_yaxis()  # the first group on top, as in the text
    axis.set_xlim(0, total_max * 1.12)
    axis.xaxis.set_major_locator(locator(integer=True))
    axis.set_title(_("Members"), fontweight="bold")
    axis.grid(axis="x", alpha=0.3)
    axis.set_axisbelow(True)
    axis.spines[["top", "right"]].set_visible(False)
    handles = [patch(color=ROLE_COLOURS[r], label=role_name(r)) for r in shown]
    if handles:
        axis.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -LEGEND_DROP / panel),
                    ncol=min(len(handles), 6), frameon=False, fontsize=8)


def _reach(axis: Any, rows: list[dict[str, Any]], patch: Any, panel: float) -> None:
    names = [_name(r["group"]) for r in rows]
    y = list(range(len(rows)))
    bar = 0.38
    for i, r in enumerate(rows):
        if not r["copies"]:
            axis.text(1, i, _("no posts yet"), va="center", fontsize=8, color=MUTED, style="italic")
            continue
        delivered = 100 * r["delivered"] / r["copies"]
        axis.barh(i - bar / 2, delivered, height=bar, color=DELIVERED)
        axis.text(delivered + 1, i - bar / 2, f"{round(delivered)} %", va="center", fontsize=8,
                  color="black" if delivered else DELIVERED, fontweight="normal" if delivered else "bold")
        if r["ack_delivered"]:
            acked = 100 * r["acks"] / r["ack_delivered"]
            axis.barh(i + bar / 2, acked, height=bar, color=ACKNOWLEDGED)
            axis.text(acked + 1, i + bar / 2, f"{round(acked)} %", va="center", fontsize=8,
                      color="black" if acked else ACKNOWLEDGED, fontweight="normal" if acked else "bold")
        else:
            axis.text(1, i + bar / 2, _("no acknowledgement asked"), va="center", fontsize=7, color=MUTED)
    axis.set_yticks(y, names)
    axis.set_ylim(len(rows) - 0.5, -0.5)  # the first group on top; empty when there are no groups
    axis.set_xlim(0, 112)
    axis.set_xticks([0, 25, 50, 75, 100], ["0 %", "25 %", "50 %", "75 %", "100 %"])
    axis.set_title(_("Do messages reach families?"), fontweight="bold")
    axis.grid(axis="x", alpha=0.3)
    axis.set_axisbelow(True)
    axis.spines[["top", "right"]].set_visible(False)
    if not rows:
        axis.text(50, 0, _("no groups yet"), ha="center", va="center", color=MUTED)
    handles = [patch(color=DELIVERED, label=_("delivered, %")), patch(color=ACKNOWLEDGED, label=_("acknowledged, %"))]
    axis.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -LEGEND_DROP / panel), ncol=2,
                frameon=False, fontsize=8)
