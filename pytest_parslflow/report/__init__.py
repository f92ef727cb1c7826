"""The failure report: finding and excerpting logs (``logs``), formatting a failed
test's sections (``failure``) and the session's summary (``summary``).

Imported when a report is first made, not at plugin load (``summary`` excepted).
"""
