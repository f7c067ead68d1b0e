"""A small deterministic simulator of authentication events (ECS-shaped) with labelled attacks.

    from vigil_models.simulate import simulate
    events = simulate(n_users=200, days=28, seed=7)     # list of dicts, sorted by @timestamp

    cd models && ../.venv/bin/python -m vigil_models.simulate --users 50 --days 7 > events.ndjson

Users have a home country, city, ISP (ASN), device and browser, working hours in their time zone,
and weekends off; some travel, some use a commercial VPN, a few corporate users go through the
company VPN egress in a cloud ASN, and a few service accounts log in from cloud ASNs with
scripting user agents (benign automation). Benign failures are typos followed by a success.

Attacks (labelled `vigil.sim.label: malicious`, `vigil.sim.attack: <type>`):
- `password_spray`: one hosting IP tries one or two passwords against many users, slowly;
- `credential_stuffing`: many residential-proxy IPs, many users, mostly failures, a few successes;
- `brute_force`: one IP hammers one user, then succeeds;
- `new_country_takeover`: a successful login with stolen credentials from a country, ISP and
  device the user never used, usually off hours;
- `impossible_travel`: the user logs in from home, and within an hour from another continent.

Every event carries the ground truth under `vigil.sim` (label, attack, campaign): those fields are
labels for training and evaluation, never features. The events carry no precomputed context
(counts, history): the first login-risk model uses per-event features only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

# code, lat, lon, utc offset (hours), weight as a home country, residential ISPs [(asn, org)]
COUNTRIES = {
    "US": (39.8, -98.6, -5, 0.30, [(7922, "Comcast Cable Communications, LLC"), (7018, "AT&T Services, Inc."), (701, "Verizon Business")]),
    "DE": (51.2, 10.4, 1, 0.12, [(3320, "Deutsche Telekom AG"), (3209, "Vodafone GmbH")]),
    "FR": (46.6, 2.2, 1, 0.10, [(3215, "Orange S.A."), (12322, "Free SAS")]),
    "GB": (54.0, -2.0, 0, 0.10, [(2856, "British Telecommunications PLC"), (5089, "Virgin Media Limited")]),
    "IN": (21.0, 78.0, 5, 0.08, [(9829, "National Internet Backbone"), (55836, "Reliance Jio Infocomm Limited")]),
    "BR": (-14.2, -51.9, -3, 0.06, [(18881, "TELEFONICA BRASIL S.A"), (28573, "Claro NXT Telecomunicacoes Ltda")]),
    "JP": (36.2, 138.3, 9, 0.06, [(2516, "KDDI CORPORATION"), (4713, "NTT Communications Corporation")]),
    "CA": (56.1, -106.3, -5, 0.06, [(812, "Rogers Communications Canada Inc."), (577, "Bell Canada")]),
    "NL": (52.1, 5.3, 1, 0.06, [(1136, "KPN B.V."), (33915, "Vodafone Libertel B.V.")]),
    "ES": (40.5, -3.7, 1, 0.06, [(3352, "TELEFONICA DE ESPANA S.A.U."), (12479, "ORANGE ESPAGNE SA")]),
    # not home countries: travel, VPN exits and attack origins
    "SG": (1.35, 103.8, 8, 0.0, [(9506, "Singtel Fibre Broadband")]),
    "RU": (61.5, 105.3, 3, 0.0, [(12389, "PJSC Rostelecom"), (8359, "MTS PJSC")]),
    "CN": (35.9, 104.2, 8, 0.0, [(4134, "Chinanet"), (4837, "CHINA UNICOM China169 Backbone")]),
    "VN": (14.1, 108.3, 7, 0.0, [(7552, "Viettel Group"), (45899, "VNPT Corp")]),
    "NG": (9.1, 8.7, 1, 0.0, [(29465, "MTN NIGERIA Communication limited")]),
    "RO": (45.9, 24.97, 2, 0.0, [(8708, "RCS & RDS SA")]),
    "ID": (-0.8, 113.9, 7, 0.0, [(7713, "PT Telekomunikasi Indonesia")]),
    "UA": (48.4, 31.2, 2, 0.0, [(15895, "Kyivstar PJSC")]),
    "MX": (23.6, -102.6, -6, 0.0, [(8151, "UNINET")]),
    "IT": (41.9, 12.6, 1, 0.0, [(3269, "Telecom Italia S.p.A.")]),
}
HOME = [c for c, v in COUNTRIES.items() if v[3] > 0]
TRAVEL = ["US", "DE", "FR", "GB", "JP", "SG", "ES", "IT", "NL", "MX", "CA", "BR"]
ATTACK_ORIGINS = ["RU", "CN", "VN", "NG", "RO", "ID", "UA", "BR", "IN", "US"]

# hosting / VPN providers: (asn, org, countries where they have exits)
HOSTING = [
    (14061, "DIGITALOCEAN-ASN", ["US", "NL", "DE", "SG", "GB"]),
    (16276, "OVH SAS", ["FR", "CA", "DE", "GB"]),
    (24940, "Hetzner Online GmbH", ["DE"]),
    (20473, "The Constant Company, LLC", ["US", "NL", "JP", "SG"]),
    (51167, "Contabo GmbH", ["DE", "US"]),
    (9009, "M247 Europe SRL", ["RO", "GB", "NL", "US", "DE"]),
    (60068, "Datacamp Limited", ["GB", "US", "NL", "SG"]),
    (16509, "AMAZON-02", ["US", "DE", "IE", "SG", "JP"]),
    (8075, "MICROSOFT-CORP-MSN-AS-BLOCK", ["US", "NL", "IE"]),
    (396982, "GOOGLE-CLOUD-PLATFORM", ["US", "NL", "SG"]),
]
HOSTING_ASNS = [h[0] for h in HOSTING]
COMMERCIAL_VPN = [9009, 60068]
CORP_VPN = (16509, "AMAZON-02", "US")
COUNTRIES.setdefault("IE", (53.4, -8.2, 0, 0.0, [(5466, "Eircom Limited")]))

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
]
TOOLS = [
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "okhttp/4.9.3",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    "Hydra",
    "python-urllib3/1.26.18",
]
SERVICE_UAS = ["python-requests/2.28.1", "Go-http-client/2.0", "curl/7.88.1", "okhttp/4.10.0"]

FIRST = ["anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jonas", "kim",
         "leo", "maria", "noah", "olga", "paul", "quinn", "rosa", "sam", "tara", "umar", "vera",
         "wei", "xavier", "yuki", "zoe", "amir", "bea", "chen", "dara", "eli", "fatima", "gus",
         "hana", "ivan", "julia", "kofi", "lena", "mateo", "nina", "omar", "priya", "raj", "sofia"]
LAST = ["smith", "mueller", "martin", "brown", "garcia", "rossi", "tanaka", "silva", "kumar",
        "dubois", "jansen", "lopez", "nowak", "kim", "schmidt", "wilson", "sato", "costa", "singh",
        "moreau", "bakker", "fernandez", "ivanova", "chen", "okafor", "novak", "larsen", "ali"]

ATTACKS = ["password_spray", "credential_stuffing", "brute_force", "new_country_takeover",
           "impossible_travel"]


@dataclass
class Net:
    asn: int
    org: str
    country: str
    ip: str
    lat: float
    lon: float


@dataclass
class User:
    name: str
    country: str
    home: Net
    office: Net | None
    ua: str
    mobile_ua: str | None
    start_hour: float
    logins_per_day: float
    vpn: Net | None
    service: bool


def _prefix(asn: int) -> tuple[int, int]:
    """A stable public-looking /16 for an ASN (synthetic, not the ASN's real space)."""
    r = np.random.default_rng(asn)
    first = int(r.choice([23, 31, 37, 45, 46, 62, 77, 78, 81, 82, 85, 86, 89, 91, 93, 95, 109,
                          141, 145, 151, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217]))
    return first, int(r.integers(0, 256))


def _ip(asn: int, rng: np.random.Generator) -> str:
    a, b = _prefix(asn)
    return f"{a}.{b}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"


def _geo(country: str, rng: np.random.Generator, spread: float = 3.0) -> tuple[float, float]:
    lat, lon = COUNTRIES[country][0], COUNTRIES[country][1]
    return (round(float(np.clip(lat + rng.normal(0, spread / 2), -89, 89)), 4),
            round(float(((lon + rng.normal(0, spread)) + 180) % 360 - 180), 4))


def _residential(country: str, rng: np.random.Generator) -> Net:
    asn, org = COUNTRIES[country][4][int(rng.integers(len(COUNTRIES[country][4])))]
    lat, lon = _geo(country, rng)
    return Net(asn, org, country, _ip(asn, rng), lat, lon)


def _hosting(rng: np.random.Generator, asns=None, country=None) -> Net:
    choices = [h for h in HOSTING if asns is None or h[0] in asns]
    asn, org, cs = choices[int(rng.integers(len(choices)))]
    c = country if country in cs else cs[int(rng.integers(len(cs)))]
    lat, lon = _geo(c, rng, 1.0)
    return Net(asn, org, c, _ip(asn, rng), lat, lon)


def _browser(rng: np.random.Generator, mobile: bool | None = None) -> str:
    idx = [i for i, b in enumerate(BROWSERS) if mobile is None or (("Mobile" in b) == mobile)]
    b = BROWSERS[idx[int(rng.integers(len(idx)))]]
    return b.format(v=int(rng.integers(112, 122)), m=int(rng.integers(0, 6)))


def make_users(n: int, rng: np.random.Generator) -> list[User]:
    users, names = [], set()
    weights = np.array([COUNTRIES[c][3] for c in HOME])
    weights = weights / weights.sum()
    n_service = max(2, n // 40)
    for i in range(n):
        service = i >= n - n_service
        if service:
            name = f"svc-{['backup', 'reporting', 'sync', 'deploy', 'monitor', 'etl', 'billing'][i % 7]}-{i:03d}"
        else:
            while True:
                name = f"{FIRST[int(rng.integers(len(FIRST)))]}.{LAST[int(rng.integers(len(LAST)))]}"
                if name not in names:
                    break
        names.add(name)
        country = str(rng.choice(HOME, p=weights))
        home = _residential(country, rng)
        if service:
            net = _hosting(rng, asns=[16509, 8075, 396982])
            users.append(User(name, net.country, net, None, SERVICE_UAS[i % len(SERVICE_UAS)], None,
                              float(rng.integers(0, 24)), 6.0, None, True))
            continue
        office = None
        if rng.random() < 0.5:  # office network: a business line of a national ISP
            office = _residential(country, rng)
        if rng.random() < 0.12:  # corporate VPN egress in a cloud ASN
            asn, org, c = CORP_VPN
            lat, lon = _geo(c, rng, 0.5)
            office = Net(asn, org, c, _ip(asn, rng), lat, lon)
        vpn = _hosting(rng, asns=COMMERCIAL_VPN) if rng.random() < 0.12 else None
        users.append(User(
            name, country, home, office, _browser(rng, mobile=False),
            _browser(rng, mobile=True) if rng.random() < 0.6 else None,
            float(rng.uniform(6.5, 10.0)), float(rng.uniform(1.0, 3.5)), vpn, False))
    return users


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _event(t: datetime, user: str, outcome: str, net: Net, ua: str, label: str = "benign",
           attack: str | None = None, campaign: str | None = None) -> dict:
    return {
        "@timestamp": _ts(t),
        "event": {"category": ["authentication"], "type": ["start"], "action": "user_login",
                  "outcome": outcome, "dataset": "vigil.sim"},
        "user": {"name": user},
        "source": {"ip": net.ip, "geo": {"country_iso_code": net.country,
                                          "location": {"lat": net.lat, "lon": net.lon}},
                   "as": {"number": net.asn, "organization": {"name": net.org}}},
        "user_agent": {"original": ua},
        "vigil": {"sim": {"label": label, "attack": attack, "campaign": campaign}},
    }


def _benign_day(u: User, day: datetime, rng: np.random.Generator, travel: str | None) -> list[dict]:
    out = []
    weekday = day.weekday()
    if u.service:
        # scheduled jobs: a fixed hour, every day, occasional failure with retry
        for k in range(int(rng.integers(3, 7))):
            t = day + timedelta(hours=(u.start_hour + 4 * k) % 24, seconds=float(rng.uniform(0, 90)))
            if rng.random() < 0.03:
                out.append(_event(t, u.name, "failure", u.home, u.ua))
                t += timedelta(seconds=30)
            out.append(_event(t, u.name, "success", u.home, u.ua))
        return out
    tz = COUNTRIES[travel or u.country][2]
    if weekday >= 5:
        n = int(rng.poisson(0.4))
    else:
        n = int(rng.poisson(u.logins_per_day))
    for _ in range(n):
        if weekday < 5 and rng.random() < 0.85:
            local = u.start_hour + rng.uniform(0, 9.5)
        else:
            local = rng.uniform(7, 23.5)
        t = day + timedelta(hours=float(local - tz))
        if travel:
            # hotel / mobile networks abroad, sometimes a hosting-based hotspot or VPN
            net = _hosting(rng, country=travel) if rng.random() < 0.15 else _residential(travel, rng)
            ua = u.ua if rng.random() < 0.6 or not u.mobile_ua else u.mobile_ua
        else:
            r = rng.random()
            if u.vpn and r < 0.35:
                net = u.vpn
            elif u.office and weekday < 5 and r < 0.75:
                net = u.office
            else:
                net = u.home
            ua = u.mobile_ua if u.mobile_ua and rng.random() < 0.3 else u.ua
        if rng.random() < 0.06:  # typo, then success
            out.append(_event(t, u.name, "failure", net, ua))
            t += timedelta(seconds=float(rng.uniform(4, 40)))
            if rng.random() < 0.15:
                out.append(_event(t, u.name, "failure", net, ua))
                t += timedelta(seconds=float(rng.uniform(4, 40)))
        out.append(_event(t, u.name, "success", net, ua))
    return out


def _campaign_time(start: datetime, days: int, rng: np.random.Generator) -> datetime:
    return start + timedelta(days=int(rng.integers(0, days)), hours=float(rng.uniform(0, 24)))


def _password_spray(users, start, days, rng, cid) -> list[dict]:
    t = _campaign_time(start, days, rng)
    net = _hosting(rng, asns=[14061, 16276, 24940, 20473, 51167, 9009])
    ua = TOOLS[int(rng.integers(len(TOOLS)))] if rng.random() < 0.6 else _browser(rng, False)
    targets = [u for u in users if not u.service]
    k = int(rng.integers(min(25, len(targets)), min(80, len(targets)) + 1))
    idx = rng.choice(len(targets), size=k, replace=False)
    out = []
    for rnd in range(int(rng.integers(1, 3))):
        for j in idx:
            t += timedelta(seconds=float(rng.exponential(45)))
            ok = rng.random() < 0.02
            out.append(_event(t, targets[j].name, "success" if ok else "failure", net, ua,
                              "malicious", "password_spray", cid))
        t += timedelta(minutes=float(rng.uniform(20, 90)))
    return out


def _credential_stuffing(users, start, days, rng, cid) -> list[dict]:
    t = _campaign_time(start, days, rng)
    targets = [u for u in users if not u.service]
    out = []
    n = int(rng.integers(80, 250))
    headless = rng.random() < 0.5
    for _ in range(n):
        t += timedelta(seconds=float(rng.exponential(8)))
        c = ATTACK_ORIGINS[int(rng.integers(len(ATTACK_ORIGINS)))] if rng.random() < 0.6 else \
            HOME[int(rng.integers(len(HOME)))]
        net = _residential(c, rng) if rng.random() < 0.7 else _hosting(rng)
        ua = TOOLS[3] if headless and rng.random() < 0.7 else _browser(rng)
        # stuffed lists hold many names that do not exist here: those are failures too
        name = targets[int(rng.integers(len(targets)))].name if rng.random() < 0.6 else \
            f"{FIRST[int(rng.integers(len(FIRST)))]}{int(rng.integers(1, 99))}"
        ok = rng.random() < 0.03
        out.append(_event(t, name, "success" if ok else "failure", net, ua, "malicious",
                          "credential_stuffing", cid))
    return out


def _brute_force(users, start, days, rng, cid) -> list[dict]:
    t = _campaign_time(start, days, rng)
    targets = [u for u in users if not u.service]
    u = targets[int(rng.integers(len(targets)))]
    c = ATTACK_ORIGINS[int(rng.integers(len(ATTACK_ORIGINS)))]
    net = _hosting(rng) if rng.random() < 0.6 else _residential(c, rng)
    ua = TOOLS[int(rng.integers(len(TOOLS)))] if rng.random() < 0.7 else _browser(rng, False)
    out = []
    for _ in range(int(rng.integers(15, 60))):
        t += timedelta(seconds=float(rng.exponential(4)))
        out.append(_event(t, u.name, "failure", net, ua, "malicious", "brute_force", cid))
    if rng.random() < 0.7:
        t += timedelta(seconds=float(rng.exponential(4)))
        out.append(_event(t, u.name, "success", net, ua, "malicious", "brute_force", cid))
    return out


def _new_country_takeover(users, start, days, rng, cid) -> list[dict]:
    targets = [u for u in users if not u.service]
    u = targets[int(rng.integers(len(targets)))]
    others = [c for c in ATTACK_ORIGINS if c != u.country]
    c = others[int(rng.integers(len(others)))]
    net = _residential(c, rng) if rng.random() < 0.6 else _hosting(rng, country=c)
    ua = _browser(rng, mobile=rng.random() < 0.3)
    day = start + timedelta(days=int(rng.integers(0, days)))
    # off hours for the victim, often
    local = rng.uniform(0, 6) if rng.random() < 0.6 else rng.uniform(6, 24)
    t = day + timedelta(hours=float(local - COUNTRIES[u.country][2]))
    out = []
    for _ in range(int(rng.integers(1, 4))):
        out.append(_event(t, u.name, "success", net, ua, "malicious", "new_country_takeover", cid))
        t += timedelta(minutes=float(rng.uniform(5, 120)))
    return out


def _impossible_travel(users, start, days, rng, cid) -> list[dict]:
    targets = [u for u in users if not u.service]
    u = targets[int(rng.integers(len(targets)))]
    far = [c for c in ATTACK_ORIGINS + TRAVEL
           if abs(COUNTRIES[c][1] - COUNTRIES[u.country][1]) > 60 and c != u.country]
    c = far[int(rng.integers(len(far)))]
    day = start + timedelta(days=int(rng.integers(0, days)))
    t = day + timedelta(hours=float(u.start_hour + rng.uniform(0, 6) - COUNTRIES[u.country][2]))
    out = [_event(t, u.name, "success", u.home, u.ua)]  # the real user, benign
    t += timedelta(minutes=float(rng.uniform(5, 60)))
    net = _residential(c, rng) if rng.random() < 0.5 else _hosting(rng, country=c)
    ua = u.ua if rng.random() < 0.3 else _browser(rng)
    out.append(_event(t, u.name, "success", net, ua, "malicious", "impossible_travel", cid))
    return out


ATTACK_FNS = {
    "password_spray": (_password_spray, 1 / 5),
    "credential_stuffing": (_credential_stuffing, 1 / 8),
    "brute_force": (_brute_force, 1 / 3),
    "new_country_takeover": (_new_country_takeover, 1 / 1.2),
    "impossible_travel": (_impossible_travel, 1 / 1.2),
}


def simulate(n_users: int = 200, days: int = 28, seed: int = 7,
             start: str = "2026-01-05T00:00:00Z", attacks: bool = True) -> list[dict]:
    """Events sorted by @timestamp. Campaign counts per attack type scale with `days`
    (e.g. 28 days: ~5 sprays, ~3 stuffing waves, ~9 brute forces, ~23 takeovers,
    ~23 impossible travels); every type appears at least twice when attacks is true."""
    rng = np.random.default_rng(seed)
    t0 = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    users = make_users(n_users, rng)
    # trips: (user index, first day, last day, country)
    trips = {}
    for i, u in enumerate(users):
        if not u.service and rng.random() < 0.12:
            d0 = int(rng.integers(0, max(1, days - 3)))
            choices = [c for c in TRAVEL if c != u.country]
            trips[i] = (d0, d0 + int(rng.integers(2, 6)), choices[int(rng.integers(len(choices)))])
    events: list[dict] = []
    for d in range(days):
        day = t0 + timedelta(days=d)
        for i, u in enumerate(users):
            trip = trips.get(i)
            travel = trip[2] if trip and trip[0] <= d <= trip[1] else None
            events.extend(_benign_day(u, day, rng, travel))
    if attacks:
        for kind in ATTACKS:
            fn, per_day = ATTACK_FNS[kind]
            n = max(2, int(round(days * per_day)))
            # campaign k starts in the k-th of n equal windows: spread over the whole period
            for k in range(n):
                lo, hi = (k * days) // n, max((k * days) // n + 1, ((k + 1) * days) // n)
                events.extend(fn(users, t0 + timedelta(days=lo), hi - lo, rng, f"{kind}-{k:02d}"))
    events.sort(key=lambda e: (e["@timestamp"], e["user"]["name"], e["source"]["ip"]))
    return events


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Simulate authentication events (NDJSON on stdout)")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-01-05T00:00:00Z")
    args = ap.parse_args(argv)
    for e in simulate(args.users, args.days, args.seed, args.start):
        sys.stdout.write(json.dumps(e, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
