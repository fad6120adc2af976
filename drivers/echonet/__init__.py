"""ECHONET Lite driver.

Pure core (no I/O), importable on its own:

* :mod:`drivers.echonet.frame`: frames, EOJ, ESV, ``decode``/``encode`` and request builders.
* :mod:`drivers.echonet.propmap`: property maps 0x9D/0x9E/0x9F.
* :mod:`drivers.echonet.properties`: typed property codecs per class, meter arithmetic.

Around it:

* :mod:`drivers.echonet.transport`: the asyncio UDP endpoint (port 3610, multicast 224.0.23.0).
* :mod:`drivers.echonet.discovery`: finding nodes and their objects.
* :mod:`drivers.echonet.adapters`: devices as capabilities, and the per-device poller.
* :mod:`drivers.echonet.sim`: the simulated node (the peer of tests, demo and installers).
"""
