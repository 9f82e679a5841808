"""index.html of a report: the runs, then every figure with its caption and links to each file."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from core.data.naming import display_name

_CSS = """
body{font-family:Inter,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2430;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#5c6477;margin-top:0} table{border-collapse:collapse;font-size:.9rem}
td,th{border-bottom:1px solid #e6e9f0;padding:.3rem .6rem;text-align:left} code{font-size:.85rem}
figure{margin:2rem 0;padding-bottom:1.5rem;border-bottom:1px solid #e6e9f0} figure img{max-width:100%}
figcaption{margin-top:.5rem;line-height:1.45} .links a{margin-right:.8rem} .note{color:#a34700}
"""


def index_html(manifest: Mapping[str, Any]) -> str:
    """The report's index page from its manifest (report.json)."""
    e = html.escape
    style = "publication style" if manifest["style"]["publication"] else "screen style"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(manifest['title'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(manifest['title'])}</h1><p class='meta'>Layerscope {e(manifest['layerscope_version'])} · "
             f"{e(manifest['created'])} · {style} · {len(manifest['figures'])} figures</p>"]
    for note in manifest["notes"]:
        parts.append(f"<p class='note'>{e(note)}</p>")
    parts.append("<h2>Runs</h2><table><tr><th>model</th><th>weights</th><th>dataset</th><th>fingerprint</th>"
                 "<th>inputs</th><th>layers</th><th>pooling</th><th>run key</th></tr>")
    for run in manifest["runs"]:
        if run.get("missing"):
            parts.append(f"<tr><td colspan='7'>run not in the workspace</td><td><code>{e(run['key'])}</code></td></tr>")
            continue
        weights = str(run["model"].get("weights", ""))[:12]
        fingerprint = str(run["dataset"].get("fingerprint", ""))[:12]
        parts.append(
            f"<tr><td>{e(run['model']['name'])}</td><td><code>{e(weights)}</code></td>"
            f"<td>{e(display_name(run['dataset']['name']))}</td><td><code>{e(fingerprint)}</code></td>"
            f"<td>{run['dataset']['n_inputs']}</td><td>{len(run['layers'])}</td><td>{e(run['pooling'])}</td>"
            f"<td><code>{e(run['key'])}</code></td></tr>")
    parts.append("</table><h2>Figures</h2>")
    for i, fig in enumerate(manifest["figures"], 1):
        files = fig["files"]
        image = (f"<img src='{e(files['png'])}' alt='{e(fig['title'])}' loading='lazy'>" if "png" in files else
                 f"<p class='note'>No image: {e(next(iter(fig['skipped'].values()), 'not rendered'))}</p>")
        labels = {"svg": "SVG", "pdf": "PDF", "html": "interactive HTML", "csv": "CSV", "parquet": "Parquet"}
        links = [f"<a href='{e(files[fmt])}'>{label}</a>" for fmt, label in labels.items() if fmt in files]
        links.append(f"<a href='{e(fig['sidecar'])}'>sidecar (JSON)</a>")
        notes = "".join(
            f" <span class='note'>{e(fmt.upper())}: {e(n.get('downsampled', {}).get('why') or n.get('animation', ''))}"
            "</span>" for fmt, n in fig["notes"].items()
        )
        parts.append(f"<figure id='{e(fig['name'])}'>{image}<figcaption><b>Figure {i}. {e(fig['title'])}</b> "
                     f"{e(fig['caption'])}{notes}<br><span class='links'>{''.join(links)}</span></figcaption></figure>")
    if manifest["not_drawn"]:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li><b>{e(str(d['title']))}</b>: {e(d['reason'])}</li>" for d in manifest["not_drawn"]]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
