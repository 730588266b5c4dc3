"""Reports of the apps: matplotlib figures inline in self-contained HTML pages."""

from __future__ import annotations

import base64
import io
from html import escape

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure_img(fig: Figure, dpi: int = 100, *, tight: bool = False) -> str:
    """A figure as an ``<img>`` whose PNG is inline (a base64 ``data:`` URI).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Drawn on the Agg canvas (no display needed); its label becomes the ``alt`` text.
    dpi : int
    tight : bool
        Crop the PNG to what is drawn (``bbox_inches="tight"``).

    Returns
    -------
    str
    """
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" text chunk: a report should carry no links, even encoded ones.
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                bbox_inches="tight" if tight else None)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{escape(fig.get_label())}" src="data:image/png;base64,{data}">'
