# ota_time.py: the wall clock for the schedule (update windows, the interval between checks,
# crash times). Imported by ota_schedule.py only when a gate needs the time; copy it with it.
# A board boots with its clock unset (2021-01-01 on the RP2040, 2000-01-01 on others): the time
# then comes from NTP (ntptime) or, when NTP fails, from the Date header of one HTTP response of
# the API server, and is written to machine.RTC. Never a time before 2024 (an unset clock).
import time
import ota

VALID_AFTER = 1704067200  # 2024-01-01 00:00 UTC: an earlier time is an unset clock
_MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec"


def epoch(y, mo, d, h=0, mi=0, s=0):
    # seconds since 1970-01-01 of a UTC date and time (days from the civil calendar)
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo - 3 if mo > 2 else mo + 9) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + h * 3600 + mi * 60 + s


# time.time() + _offset is Unix time: the port's epoch (1970, or 2000 on some ports), and the
# difference kept when the clock cannot be set (no machine.RTC: CPython, the unix port)
_offset = epoch(*time.gmtime(0)[:3]) if hasattr(time, "gmtime") else 0
_EPOCH = _offset


def now(u):
    # Unix time (UTC on a board), the clock set first when it is unset; None when no source
    # answered (callers then do what needs no clock).
    global _offset
    t = time.time() + _offset
    if t >= VALID_AFTER:
        return int(t)
    try:
        import ntptime

        u.feed()
        ntptime.settime()  # sets machine.RTC
        u.log("clock set by NTP")
    except Exception as e:  # no ntptime, no UDP, no answer
        u.log("NTP failed: %r", e)
    t = time.time() + _offset
    if t >= VALID_AFTER:
        return int(t)
    d = server_date(u)
    if d is None:
        return None
    _set(d)
    _offset = _EPOCH
    if time.time() + _offset < VALID_AFTER:  # no RTC here: keep the difference
        _offset = d - int(time.time())
    u.log("clock set from the Date header: %d", d)
    return d


def localtime(t):
    # time.localtime() of Unix time t (a board has no time zone: UTC)
    return time.localtime(int(t) - _EPOCH)


def server_date(u):
    # The Date header of one request to the API server (GitHub's /rate_limit: it costs no API
    # quota), as seconds since 1970; None if there is no answer or no date.
    ota._KEPT_HEADERS["date"] = "date"
    scheme, host, port, path = ota._split_url(u.cfg["api_base"])
    try:
        u.requests += 1
        r = u._request(scheme, host, port, path.rstrip("/") + "/rate_limit", None, 0, False)
        r.close()
        return parse_date(r.headers.get("date", ""))
    except (OSError, ValueError, ota.OTAError, ota.Retry) as e:
        u.log("no Date from %s: %r", host, e)
        return None
    finally:
        del ota._KEPT_HEADERS["date"]


def parse_date(s):
    # "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 IMF-fixdate) -> seconds since 1970
    p = s.split()
    h, mi, sec = p[4].split(":")
    return epoch(int(p[3]), _MONTHS.index(p[2]) // 3 + 1, int(p[1]), int(h), int(mi), int(sec))


def _set(t):
    # machine.RTC to t (seconds since 1970, UTC), on a board
    m = ota._board()
    if m and hasattr(m, "RTC"):
        d = time.gmtime(t - _EPOCH) if hasattr(time, "gmtime") else time.localtime(t - _EPOCH)
        days = t // 86400
        m.RTC().datetime((d[0], d[1], d[2], (days + 3) % 7, d[3], d[4], d[5], 0))
