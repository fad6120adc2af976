"""B-route (Wi-SUN, SKSTACK IP) driver for the low-voltage smart meter.

Pure, sans-I/O cores, each fed bytes or events and returning events or actions:

* :mod:`.dialect`: per-module command forms and output layouts, detection, FAIL ER05 advice;
* :mod:`.parser`: ``LineParser``, module output bytes → events;
* :mod:`.join`: ``JoinMachine``, from an opened port to a PANA session;
* :mod:`.scan`: ``ScanMachine``, list the PANs in range without joining;
* :mod:`.session`: ``Session``, sends to and receives from the meter once joined;
* :mod:`.actions` and :mod:`.errors`: what the cores ask the shell to do, and what they raise.

Thin asyncio shells on top:

* :mod:`.transport`: ``ModuleLink``, the serial port, the parser and the single timer;
* :mod:`.meter`: ``MeterSession``, the one ECHONET Lite request slot to the meter, and the exact
  scaling of its counters (``MeterScale``);
* :mod:`.adapter`: ``BrouteMeter``, the daemon component and the meter capabilities.

:mod:`.sim` is the simulated peer (meter model, module emulator, pseudo-terminal).
"""
