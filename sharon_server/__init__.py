"""SHaRON Server: all I/O lives here (Twisted, autobahn, twisted.web, SQLAlchemy)."""

__version__ = "0.1.0"
