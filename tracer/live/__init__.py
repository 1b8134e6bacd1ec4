"""Live mode: the userspace dataplane on TUN devices, so real programs talk through it.

``topology`` declares the pods to realise, ``netns`` realises them (one namespace per pod, a
TUN ``eth0`` in each), ``frames`` turns TUN bytes into pipeline packets and back, ``loop``
forwards packets between the TUNs through the pipeline, ``flows`` keeps what it saw, and
``state`` is the file that lets ``exec``, ``flows`` and ``down`` find a running ``up``.
"""
