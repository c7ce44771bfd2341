"""dtmfgraph: make phone calls press keys, for real.

Layers (lowest first): ``tones`` (DSP), ``rtp`` (sans-I/O RTP), ``sip`` (sans-I/O SIP),
``media`` (asyncio drivers), then the Graph service on top.
"""

__version__ = "0.1.0"
