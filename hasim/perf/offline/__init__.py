"""Offline parts of the latency models: training, evaluation, feature building.

What ``hasim perf train / evaluate / calibrate-intervals / train-operators`` import; a
simulation run (``hasim run``) imports only the runtime modules of :mod:`hasim.perf`
(tables, compact law, predictor and kernel-model inference, artifact loading).
"""
