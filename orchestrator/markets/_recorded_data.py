"""The demo's recorded market: 48 hours, one row an hour, generated for this project.

Columns: offset from the start (s), then hashprices in US$ per H/s per day for KawPoW,
Etchash and Autolykos2, then the site's all-in power price in US$/kWh.

How it was made (deterministically, seed 20240501), so it looks like a real two days:
- Hashprices start at 2024-like levels (KawPoW 1.15e-8, about 0.0115 US$ per MH/s per day;
  Etchash 6.0e-9; Autolykos2 3.4e-9) and follow a small random walk (1.2 % an hour).
- Hours 24-37 hold a coin rally: KawPoW rises to about 2.4x and falls back, the others follow
  at half the amplitude. At rally prices mining can beat cheap AI contracts, so the demo shows
  GPUs moving for a reason, and moving back.
- Power follows the median hour-of-day shape of ERCOT's 2024-25 day-ahead hub-average price
  (gridstatus data in ../shared/data/market-history/electricity, local time; an evening peak
  and a solar midday dip) plus 18 US$/MWh of delivery adders, with 3 % noise, and one
  scarcity hour (0.19 US$/kWh) on the second evening.
No value is copied from any third-party series.
"""

from __future__ import annotations

from typing import Final

ALGORITHMS: Final[tuple[str, ...]] = ("kawpow", "etchash", "autolykos")
STEP_S: Final = 3600.0

#: (offset_s, kawpow, etchash, autolykos, power_usd_per_kwh)
ROWS: Final[tuple[tuple[int, float, float, float, float], ...]] = (
    (0, 1.159e-08, 5.963e-09, 3.387e-09, 0.0412),
    (3600, 1.144e-08, 5.883e-09, 3.438e-09, 0.0386),
    (7200, 1.14e-08, 5.93e-09, 3.444e-09, 0.0392),
    (10800, 1.145e-08, 5.933e-09, 3.329e-09, 0.0374),
    (14400, 1.146e-08, 6.004e-09, 3.339e-09, 0.0372),
    (18000, 1.155e-08, 6.021e-09, 3.358e-09, 0.0413),
    (21600, 1.154e-08, 5.977e-09, 3.31e-09, 0.043),
    (25200, 1.173e-08, 6.021e-09, 3.361e-09, 0.0415),
    (28800, 1.183e-08, 6.042e-09, 3.358e-09, 0.0365),
    (32400, 1.187e-08, 6.144e-09, 3.316e-09, 0.0345),
    (36000, 1.175e-08, 6.216e-09, 3.295e-09, 0.0339),
    (39600, 1.167e-08, 6.299e-09, 3.36e-09, 0.0342),
    (43200, 1.162e-08, 6.303e-09, 3.363e-09, 0.0392),
    (46800, 1.185e-08, 6.333e-09, 3.366e-09, 0.0405),
    (50400, 1.231e-08, 6.283e-09, 3.291e-09, 0.0416),
    (54000, 1.216e-08, 6.373e-09, 3.293e-09, 0.041),
    (57600, 1.207e-08, 6.454e-09, 3.323e-09, 0.0477),
    (61200, 1.187e-08, 6.55e-09, 3.307e-09, 0.0516),
    (64800, 1.196e-08, 6.513e-09, 3.306e-09, 0.0615),
    (68400, 1.217e-08, 6.455e-09, 3.25e-09, 0.0674),
    (72000, 1.207e-08, 6.331e-09, 3.285e-09, 0.0624),
    (75600, 1.19e-08, 6.415e-09, 3.281e-09, 0.0502),
    (79200, 1.191e-08, 6.331e-09, 3.244e-09, 0.0471),
    (82800, 1.195e-08, 6.333e-09, 3.293e-09, 0.0413),
    (86400, 1.176e-08, 6.493e-09, 3.281e-09, 0.041),
    (90000, 1.539e-08, 7.536e-09, 3.829e-09, 0.0388),
    (93600, 1.866e-08, 8.506e-09, 4.278e-09, 0.0391),
    (97200, 2.187e-08, 9.095e-09, 4.76e-09, 0.0367),
    (100800, 2.442e-08, 9.875e-09, 5.063e-09, 0.0391),
    (104400, 2.641e-08, 1.045e-08, 5.27e-09, 0.0397),
    (108000, 2.739e-08, 1.108e-08, 5.537e-09, 0.0438),
    (111600, 2.73e-08, 1.114e-08, 5.68e-09, 0.0429),
    (115200, 2.7e-08, 1.095e-08, 5.521e-09, 0.0374),
    (118800, 2.596e-08, 1.054e-08, 5.34e-09, 0.035),
    (122400, 2.433e-08, 9.972e-09, 5.01e-09, 0.0329),
    (126000, 2.165e-08, 9.149e-09, 4.699e-09, 0.0377),
    (129600, 1.808e-08, 8.357e-09, 4.247e-09, 0.037),
    (133200, 1.481e-08, 7.275e-09, 3.766e-09, 0.0404),
    (136800, 1.136e-08, 6.36e-09, 3.285e-09, 0.0393),
    (140400, 1.117e-08, 6.33e-09, 3.281e-09, 0.0428),
    (144000, 1.149e-08, 6.282e-09, 3.327e-09, 0.0484),
    (147600, 1.164e-08, 6.353e-09, 3.339e-09, 0.0513),
    (151200, 1.163e-08, 6.361e-09, 3.289e-09, 0.0574),
    (154800, 1.177e-08, 6.299e-09, 3.265e-09, 0.19),
    (158400, 1.183e-08, 6.295e-09, 3.241e-09, 0.0664),
    (162000, 1.198e-08, 6.383e-09, 3.242e-09, 0.0503),
    (165600, 1.216e-08, 6.406e-09, 3.224e-09, 0.0468),
    (169200, 1.219e-08, 6.372e-09, 3.229e-09, 0.0408),
)
