"""ECHONET Lite driver.

Pure core (no I/O), importable on its own:

* :mod:`drivers.echonet.frame`: frames, EOJ, ESV, ``decode``/``encode`` and request builders.
* :mod:`drivers.echonet.propmap`: property maps 0x9D/0x9E/0x9F.
* :mod:`drivers.echonet.properties`: typed property codecs per class, meter arithmetic.
"""
