# ota_flatconfig.py: the flat forms of YAML and TOML that ota.load_config reads for
# .yaml/.yml/.toml configuration files (`key: value` / `key = value`, lists inline or as
# "- item" lines, comments). Imported only for such files; copy it to the board with them.


def parse(text, toml):
    # {key: value} of a flat YAML (toml False) or TOML document; ValueError naming the line
    cfg = {}
    key = pending = None  # pending: a [list] continued over lines
    n = 0
    for line in text.split("\n"):
        n += 1
        s = ",".join(_split(line)).strip()  # comments dropped
        if pending is not None:
            pending += " " + s
            if s.endswith("]"):
                cfg[key] = _value(pending, toml)
                pending = None
        elif s and s != "---":
            if not toml and s[0] == "-":
                if key is None or cfg[key] is not None and type(cfg[key]) is not list:
                    raise ValueError("line %d: list item without a key" % n)
                cfg[key] = (cfg[key] or []) + [_value(s[1:].strip(), toml)]
                continue
            i = s.find("=" if toml else ":")
            if i < 1 or s[0] == "[":
                raise ValueError("line %d: expected a flat key %s value" % (n, "=" if toml else ":"))
            key = s[:i].strip().strip("\"'")
            v = s[i + 1:].strip()
            if v.startswith("[") and not v.endswith("]"):
                pending = v
            elif toml and not v:
                raise ValueError("line %d: missing value" % n)
            else:
                cfg[key] = _value(v, toml)
    if pending is not None:
        raise ValueError("unterminated list for " + key)
    return cfg


def _split(s):
    # s cut at the first "#" and split at the commas, both outside quotes
    quote = None
    out = []
    a = 0
    for i in range(len(s)):
        c = s[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in ",#":
            out.append(s[a:i])
            a = i + 1
            if c == "#":
                return out
    return out + [s[a:]]


def _value(v, toml):
    # one flat value: [lists], 'literal', then JSON ("str", numbers, true/false, null), else a
    # YAML bare string (~ and nothing: null); TOML strings must be quoted
    import json

    if v.startswith("["):
        return [_value(x.strip(), toml) for x in _split(v[1:-1]) if x.strip()]
    if len(v) > 1 and v[0] == "'" == v[-1]:
        return v[1:-1]
    try:
        return json.loads(v)
    except ValueError:
        if toml:
            raise ValueError("strings must be quoted: " + v)
    return None if v in ("~", "") else v
