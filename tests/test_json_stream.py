"""OTA.json, the streaming JSON reader, against random documents: every container nested at depth 3
(the tree entries, manifest files, release assets of GitHub's JSON) goes to each() in order, the
rest comes back as valid JSON with the top level's values, whatever the chunk boundaries,
separators and strings full of brackets, quotes and backslashes. Strings of the rest longer than
80 bytes as sent (release notes, URLs) come back empty; inside the streamed objects they stay."""
import io
import json
import random

import ota  # python/ is on sys.path (tests/conftest.py)


class Body:
    def __init__(self, data, step):
        self.d, self.step, self.headers, self.status = io.BytesIO(data), step, {}, 200

    def readinto(self, b):
        x = self.d.read(min(len(b), self.step))
        b[:len(x)] = x
        return len(x)

    def close(self):
        pass


class Reader(ota.OTA):
    def recover(self):  # no filesystem here
        pass

    def get(self, url, off=0, gz=False, follow=True, etag=None):
        return Body(self.doc, self.step)


def depth3(doc):
    return [x for v in doc.values() if isinstance(v, (list, dict))
            for x in (v.values() if isinstance(v, dict) else v) if isinstance(x, (list, dict))]


LONG = 'release notes: "quoted", \\backslash\\, {braces} and [brackets], ' * 3


def short(v):
    # v as the rest gives it back: strings longer than 80 bytes as sent emptied, at any depth
    if isinstance(v, str):
        return "" if len(json.dumps(v)) - 2 > 80 else v
    if isinstance(v, list):
        return [short(x) for x in v]
    if isinstance(v, dict):
        return {short(k): short(x) for k, x in v.items()}
    return v


def test_random_documents():
    rnd = random.Random(7)

    def value(d):
        r = rnd.random()
        if d > 3 or r < 0.3:
            return rnd.choice([0, 10, -5, 1.5, 's,}]{"x', "a\\\\b", True, None, "0", "[{", 20, LONG, LONG[:78]])
        if r < 0.6:
            return [value(d + 1) for _ in range(rnd.randint(0, 4))]
        return {"k%d" % i: value(d + 1) for i in range(rnd.randint(0, 4))}

    for _ in range(3000):
        doc = {"a%d" % i: value(1) for i in range(rnd.randint(1, 4))}
        doc["tree"] = [rnd.choice([{"p": value(3)}, 10, 20, "0", [], {}, [1]]) for _ in range(rnd.randint(0, 8))]
        data = json.dumps(doc, separators=rnd.choice([(",", ":"), (", ", ": "), (",\n", ":")])).encode()
        u = Reader({"owner": "o", "repo": "r", "chunk": 256})
        u.doc, u.step = data, rnd.randint(1, 300)
        got = []
        rest = u.json("x", got.append)
        assert got == depth3(doc), data
        assert set(rest) == set(doc), data
        for k, v in doc.items():
            assert type(rest[k]) is type(v) and (isinstance(v, (list, dict)) or rest[k] == short(v)), (k, data)
