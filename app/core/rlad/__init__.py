"""RLAD (seed 000): LSTM DQN + iForest warm-up + label propagation + margin active learning.

Modules, read in this order: ``environment`` (the MDP over windows and its reward table), ``agent``
(the DQN: eval/target LSTM networks, replay memory, the training loop), ``warmup`` (iForest window
scores and the N_w high/low/middle windows), ``propagation`` (pseudo-labels from true labels), and
``detector`` (``RLADDetector``, the :class:`~app.core.detectors.base.Detector` that ties them together).
"""
