"""sbx's matplotlib backend: renders with Agg and keeps every figure the code
shows, saves or leaves open as a PNG plus a JSON description in the
directory named by SBX_CODE_ARTIFACTS. The agent selects it with
MPLBACKEND=module://sbx_mpl_backend, so matplotlib (and this module) is only
imported if the code imports matplotlib itself.

Files: NAME.png and NAME.json (kind, title, x_label, y_label, elements,
charts, text), NAME sorting in the order the figures were captured. A figure is
captured again only if it changed since its last capture.
"""

import atexit
import json
import math
import os
import threading
import time

import matplotlib
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib._pylab_helpers import Gcf

_dir = os.environ.get("SBX_CODE_ARTIFACTS", "")
_lock = threading.Lock()
_seq = [0]
_tag = threading.local()
_MAX_ELEMENTS = 100
_MAX_POINTS = 1000


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _text(t):
    try:
        return t.get_text() if t is not None else ""
    except Exception:
        return ""


# Kinds are recorded by wrapping the Axes plotting methods: reliable where
# guessing from artists is not (hist draws bars, boxplot draws lines). Only
# the outermost call counts.
_KINDS = {
    "plot": "line", "step": "line", "errorbar": "line", "semilogx": "line", "semilogy": "line",
    "loglog": "line", "stackplot": "line", "fill_between": "line",
    "scatter": "scatter",
    "bar": "bar", "barh": "bar", "broken_barh": "bar",
    "hist": "histogram",
    "pie": "pie",
    "boxplot": "box", "bxp": "box", "violinplot": "box",
    "imshow": "image", "matshow": "image", "pcolormesh": "image", "pcolor": "image", "spy": "image",
}


def _wrap(name, kind):
    from matplotlib.axes import Axes
    orig = getattr(Axes, name, None)
    if orig is None or getattr(orig, "_sbx", False):
        return

    def wrapper(self, *args, **kwargs):
        depth = getattr(_tag, "depth", 0)
        if depth == 0:
            try:
                kinds = self.__dict__.setdefault("_sbx_kinds", [])
                if kind not in kinds:
                    kinds.append(kind)
            except Exception:
                pass
        if name == "bxp":
            # boxplot's statistics, for the chart's elements.
            try:
                stats = kwargs.get("bxpstats", args[0] if args else [])
                self.__dict__.setdefault("_sbx_box", []).extend(list(stats))
            except Exception:
                pass
        _tag.depth = depth + 1
        try:
            return orig(self, *args, **kwargs)
        finally:
            _tag.depth = depth

    wrapper._sbx = True
    wrapper.__name__ = orig.__name__
    wrapper.__qualname__ = getattr(orig, "__qualname__", orig.__name__)
    wrapper.__doc__ = orig.__doc__
    wrapper.__wrapped__ = orig
    setattr(Axes, name, wrapper)


for _n, _k in _KINDS.items():
    try:
        _wrap(_n, _k)
    except Exception:
        pass


def _guess(ax):
    """The kinds of an axes not drawn through a wrapped method."""
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Rectangle, Wedge
    kinds = []
    if ax.images:
        kinds.append("image")
    if any(isinstance(p, Wedge) for p in ax.patches):
        kinds.append("pie")
    elif any(isinstance(p, Rectangle) for p in ax.patches):
        kinds.append("bar")
    if any(isinstance(c, PathCollection) for c in ax.collections):
        kinds.append("scatter")
    if ax.get_lines():
        kinds.append("line")
    return kinds


def _tick_label(ax, axis, pos):
    try:
        ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
        labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
        for t, lab in zip(ticks, labels):
            if abs(float(t) - pos) < 1e-6:
                return _text(lab)
    except Exception:
        pass
    return ""


def _label(artist):
    lab = artist.get_label() if hasattr(artist, "get_label") else ""
    return "" if not lab or lab.startswith("_") else str(lab)


def _points(xy):
    out = []
    for p in xy[:_MAX_POINTS]:
        x, y = _num(p[0]), _num(p[1])
        if x is not None and y is not None:
            out.append([x, y])
    return out


def _elements(ax, kind):
    els = []
    if kind == "line":
        for ln in ax.get_lines()[:_MAX_ELEMENTS]:
            els.append({"label": _label(ln), "points": _points(ln.get_xydata())})
    elif kind == "scatter":
        from matplotlib.collections import PathCollection
        for c in ax.collections:
            if isinstance(c, PathCollection) and len(els) < _MAX_ELEMENTS:
                els.append({"label": _label(c), "points": _points(c.get_offsets())})
    elif kind in ("bar", "histogram"):
        from matplotlib.container import BarContainer
        for c in ax.containers:
            if not isinstance(c, BarContainer):
                continue
            group = _label(c)
            horizontal = getattr(c, "orientation", "vertical") == "horizontal"
            for r in c.patches:
                if len(els) >= _MAX_ELEMENTS:
                    break
                if kind == "histogram":
                    x0 = r.get_x()
                    label = "%g-%g" % (x0, x0 + r.get_width())
                    value = r.get_height()
                elif horizontal:
                    label = _tick_label(ax, "y", r.get_y() + r.get_height() / 2)
                    value = r.get_width()
                else:
                    label = _tick_label(ax, "x", r.get_x() + r.get_width() / 2)
                    value = r.get_height()
                els.append({"label": label, "value": _num(value), "group": group})
    elif kind == "box":
        for i, st in enumerate(ax.__dict__.get("_sbx_box", [])[:_MAX_ELEMENTS]):
            els.append({
                "label": str(st.get("label", i + 1)),
                "min": _num(st.get("whislo")),
                "first_quartile": _num(st.get("q1")),
                "median": _num(st.get("med")),
                "third_quartile": _num(st.get("q3")),
                "max": _num(st.get("whishi")),
                "outliers": [v for v in (_num(f) for f in list(st.get("fliers", []))[:_MAX_POINTS]) if v is not None],
            })
    elif kind == "pie":
        from matplotlib.patches import Wedge
        for w in ax.patches:
            if isinstance(w, Wedge) and len(els) < _MAX_ELEMENTS:
                els.append({"label": _label(w), "angle": _num(w.theta2 - w.theta1), "radius": _num(w.r)})
    return els


def _describe_axes(ax):
    kinds = list(ax.__dict__.get("_sbx_kinds", [])) or _guess(ax)
    kind = kinds[0] if len(kinds) == 1 else ("composite" if kinds else "unknown")
    d = {
        "kind": kind,
        "title": _text(ax.title) or ax.get_title("left") or ax.get_title("right"),
        "x_label": ax.get_xlabel(),
        "y_label": ax.get_ylabel(),
    }
    if kind not in ("composite", "unknown", "image"):
        try:
            d["x_scale"], d["y_scale"] = ax.get_xscale(), ax.get_yscale()
        except Exception:
            pass
        try:
            d["elements"] = _elements(ax, kind)
        except Exception:
            pass
    return d


def _describe(fig):
    # Colorbars and other decorations are axes without a kind of their own.
    axes = [a for a in fig.get_axes() if a.get_visible() and not hasattr(a, "_colorbar")]
    descs = [_describe_axes(a) for a in axes]
    shown = [d for d in descs if d["kind"] != "unknown"] or descs
    suptitle = _text(getattr(fig, "_suptitle", None))
    if len(shown) == 1:
        d = dict(shown[0])
        if suptitle:
            d["title"] = suptitle
    elif not shown:
        d = {"kind": "unknown", "title": suptitle}
    else:
        d = {"kind": "composite", "title": suptitle or shown[0]["title"], "charts": shown}
    try:
        d["text"] = repr(fig)
    except Exception:
        pass
    return d


def capture(fig):
    """Writes fig as the next artifact unless it is unchanged since its last
    capture."""
    if not _dir:
        return
    with _lock:
        if getattr(fig, "_sbx_captured", False) and not fig.stale:
            return
        _seq[0] += 1
        # Names sort by capture time, across processes sharing the dir.
        base = os.path.join(_dir, "%020d-%d-%04d" % (time.time_ns(), os.getpid(), _seq[0]))
        try:
            FigureCanvasAgg.print_figure(fig.canvas, base + ".tmp", format="png")
            desc = _describe(fig)
            with open(base + ".json", "w") as f:
                json.dump(desc, f, allow_nan=False)
            os.rename(base + ".tmp", base + ".png")
        except Exception as e:  # never break the user's program
            try:
                os.remove(base + ".tmp")
            except OSError:
                pass
            import sys
            print("sbx: capturing a figure failed: %r" % (e,), file=sys.stderr)
            return
        fig._sbx_captured = True
        fig.stale = False


def flush(close=True):
    """Captures every open figure (and closes them, as Jupyter's inline
    backend does at the end of a cell)."""
    for m in list(Gcf.get_all_fig_managers()):
        capture(m.canvas.figure)
    if close:
        Gcf.destroy_all()


class FigureCanvasSbx(FigureCanvasAgg):
    def print_figure(self, *args, **kwargs):
        # savefig: the user's file as asked, and a capture of the figure.
        result = super().print_figure(*args, **kwargs)
        capture(self.figure)
        return result


class FigureManagerSbx(FigureManagerBase):
    def show(self):
        capture(self.canvas.figure)


FigureCanvasSbx.manager_class = FigureManagerSbx
FigureCanvas = FigureCanvasSbx
FigureManager = FigureManagerSbx


def show(*args, **kwargs):
    flush(close=True)


atexit.register(flush, False)
