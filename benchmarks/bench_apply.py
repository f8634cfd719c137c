"""Background image benchmark: component images of one module on the 1000x1000 sky grid.

Timed, with the band counts of every component given (30 intbgd components,
as for the real model):

- ``sky.bgimage.module_images`` (apbgd with per-detector absorption, intbgd
  collapsed to 4 per-detector values before touching the image, intn, fcxb
  module image and 3 region images);
- a straightforward reference, as the original tool builds them: one full
  image per intbgd component (``sum_k det_k * C_c ifactor_c[k] / sum_j
  ifactor_c[j] area_ref[j]``) summed, apbgd ``bgdap * C / ap_ref``, the
  same fcxb images.

The two intbgd/intn images agree to 1e-12 (checked here). Figures go to
``benchmarks/results/apply.json``; nothing is asserted beyond agreement.
"""

import json
from pathlib import Path

import numpy as np
from _common import best_of

from nuskybgd.sky.bgimage import fcxb_module_image, fcxb_region_image, module_images

HERE = Path(__file__).resolve().parent
N = 1000
N_COMP = 30


def _best(fn, repeat=5):
    return best_of(fn, repeat)


def field(rng):
    y, x = np.mgrid[0:N, 0:N].astype(float)
    fx = 1 / (1 + np.exp(-(x - 500) / 3))
    fy = 1 / (1 + np.exp(-(y - 500) / 3))
    inside = ((np.abs(x - 500) < 180) & (np.abs(y - 500) < 180)).astype(float)
    det = np.array([(1 - fx) * (1 - fy), fx * (1 - fy), fx * fy, (1 - fx) * fy]) * inside
    ap = (1 + x / N) * det.sum(0) * 1e-3
    masks = [(x - cx) ** 2 + (y - cy) ** 2 < 50 ** 2 for cx, cy in ((420, 420), (420, 580), (580, 580))]
    return det, ap, masks


def reference(ap, det, ap_ref, area_ref, c_ap, c_int, ifac_int, c_intn, ifac_intn, fc, fa, masks):
    """Per-component full images, as the original builds them."""
    out = {"apbgd": ap * c_ap / ap_ref}
    img = np.zeros_like(ap)
    for c, ifac in zip(c_int, ifac_int):
        val = c * np.asarray(ifac) / (np.asarray(ifac) @ area_ref)
        for k in range(4):
            img = img + det[k] * val[k]
    out["intbgd"] = img
    img = np.zeros_like(ap)
    val = c_intn * np.asarray(ifac_intn) / (np.asarray(ifac_intn) @ area_ref)
    for k in range(4):
        img = img + det[k] * val[k]
    out["intn"] = img
    out["fcxb"] = fcxb_module_image(det, fc, fa)
    out["fcxb_regions"] = [fcxb_region_image(m, det, c, a) for m, c, a in zip(masks, fc, fa)]
    out["total"] = out["apbgd"] + out["intbgd"] + out["intn"] + out["fcxb"]
    return out


def main():
    rng = np.random.default_rng(0)
    det, ap, masks = field(rng)
    area_ref = rng.uniform(500.0, 2000.0, 4)
    ap_ref = float(ap[masks[0]].sum())
    c_int = rng.uniform(1, 50, N_COMP)
    ifac_int = rng.uniform(0.1, 0.4, (N_COMP, 4))
    c_intn, ifac_intn = 300.0, rng.uniform(2e-5, 3e-5, 4)
    fc, fa = rng.uniform(10, 30, 3), np.array([m.sum() for m in masks], float)
    c_k = rng.uniform(90, 110, 4)

    t_new, new = _best(lambda: module_images(ap, det, ap_ref, area_ref, c_k, c_int, ifac_int, c_intn, ifac_intn,
                                             fc, fa, masks))
    t_ref, ref = _best(lambda: reference(ap, det, ap_ref, area_ref, float(c_k.mean()), c_int, ifac_int, c_intn,
                                         ifac_intn, fc, fa, masks))
    for comp in ("intbgd", "intn", "fcxb"):
        np.testing.assert_allclose(new[comp], ref[comp], rtol=1e-12, atol=1e-300)
    res = {"grid": [N, N], "n_intbgd_components": N_COMP, "module_images_s": t_new, "reference_s": t_ref,
           "speedup": t_ref / t_new}
    print(f"module images ({N}x{N}, {N_COMP} intbgd components): {t_new * 1e3:.1f} ms; "
          f"per-component reference {t_ref * 1e3:.1f} ms; ratio {t_ref / t_new:.1f}x")
    out = HERE / "results" / "apply.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
