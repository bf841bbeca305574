"""Writes recall_set.jsonl: the labelled set bench/recall.py scores recall@5 on.

Written once, before any ranking was chosen, and not edited to suit one. 50 target
memories (hand-written, an assistant's long-term notes about a person and their work)
each with one question asked in other words; about 30 of the questions share almost no
word with their answer (meaning), the rest name a rare word of it (a name, a code, a
number). 280 distractors from templates over the same topics (seed 7) make a word match
alone ambiguous. Lines: {"kind": "memory", "id", "text", "tags"} then
{"kind": "query", "query", "relevant": [ids]}.

Run: python bench/data/make_recall_set.py  (rewrites the file next to it)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TARGETS = [
    # (text, tags, query)
    ("Maria is allergic to peanuts, so never order satay or pad thai for team lunches.", ["food", "team"],
     "which colleague has a nut allergy?"),
    ("My passport expires on 14 March 2027; renew it at least three months before.", ["travel", "documents"],
     "when does my travel document run out?"),
    ("The production database password rotates every 90 days; the next rotation is in February.",
     ["work", "security"], "how often do we change the credentials for the live DB?"),
    ("I prefer window seats on flights longer than two hours.", ["travel", "preference"],
     "where do I like to sit on a plane?"),
    ("Tom's daughter Lily starts primary school in September.", ["family"],
     "when does my brother's kid begin her education?"),
    ("The quarterly report for the board is due on the last Friday of each quarter.", ["work", "deadline"],
     "deadline for the board's three-monthly summary"),
    ("Dr. Okafor moved my dental check-up to 9:30 on Tuesday 3 November.", ["health", "appointment"],
     "when is my next visit to the dentist?"),
    ("The Wi-Fi password at the lake house is sunflower-2024.", ["home"],
     "internet login for the cabin by the water"),
    ("I stopped drinking coffee after 2 pm because it ruins my sleep.", ["health", "preference"],
     "why do I avoid caffeine in the afternoon?"),
    ("Our team uses trunk-based development; feature branches must merge within two days.", ["work", "process"],
     "how long can a branch live before it has to be merged?"),
    ("The landlord, Mr. Brennan, wants rent transferred by the 3rd of every month.", ["home", "money"],
     "by what date is the monthly housing payment due?"),
    ("Anna's birthday is on 22 July and she loves orchids.", ["family", "birthday"],
     "gift idea for Anna"),
    ("The staging cluster runs in eu-west-1 and costs about 1,400 dollars a month.", ["work", "cloud"],
     "how much do we spend on the test environment each month?"),
    ("I want to run a half marathon in under two hours by next spring.", ["health", "goal"],
     "my running target for next year"),
    ("Invoice INV-20931 from Acme Print was paid twice; ask them for a refund.", ["money", "work"],
     "INV-20931"),
    ("The car needs new winter tyres before December; the garage on Elm Street has them in stock.",
     ["car"], "where can I get snow-season wheels fitted?"),
    ("Grandma's lasagne recipe uses nutmeg in the bechamel and a whole kilo of ricotta.", ["food", "family"],
     "the secret ingredient in the white sauce of the family pasta bake"),
    ("The API rate limit for the partner integration is 600 requests per minute.", ["work", "api"],
     "how many calls per minute can the partner make?"),
    ("I am learning Portuguese with a tutor on Wednesday evenings.", ["learning"],
     "when are my language lessons?"),
    ("Sam recommended the book 'The Left Hand of Darkness' by Ursula K. Le Guin.", ["books"],
     "which novel did a friend suggest I read?"),
    ("Our office moves to the fourth floor of the Harbour building on 1 October.", ["work", "office"],
     "where is the company relocating?"),
    ("The kids' swimming lessons are on Saturday at 10 at the municipal pool.", ["family", "schedule"],
     "what time is the children's pool class at the weekend?"),
    ("The on-call rotation switches every Monday at 09:00 UTC.", ["work", "oncall"],
     "when does the pager duty hand over?"),
    ("I keep the spare house key with the neighbour at number 12, Mrs. Alvarez.", ["home"],
     "who holds an extra key to my place?"),
    ("Blood test results in June showed low vitamin D; the doctor suggested supplements.", ["health"],
     "what deficiency did my lab work reveal?"),
    ("The design system uses Inter for body text and a 4-pixel spacing grid.", ["work", "design"],
     "which typeface do we use in the UI?"),
    ("Budget for the kitchen renovation is capped at 18,000 euros.", ["home", "money"],
     "how much can we spend redoing the cooking area?"),
    ("I dislike horror films but enjoy slow science fiction.", ["preference", "films"],
     "what kind of movies should we pick for me?"),
    ("The cat, Miso, needs her kidney medication twice a day with food.", ["pets", "health"],
     "how often does the pet take her pills?"),
    ("Customer churn rose to 4.2 percent in Q3, mostly from the small-business plan.", ["work", "metrics"],
     "which segment drove the increase in cancellations?"),
    ("My bank's fraud line is only open until 8 pm on weekdays.", ["money"],
     "until what hour can I call about a suspicious card charge?"),
    ("We agreed with Priya to freeze the schema of the events table until the migration ends.",
     ["work", "database"], "can we alter the events table right now?"),
    ("The plumber said the boiler pressure should stay between 1 and 1.5 bar.", ["home"],
     "normal range for the heating system gauge"),
    ("Jonas prefers to be contacted on Signal rather than email.", ["people", "preference"],
     "best way to reach Jonas"),
    ("The conference talk proposal on energy-aware scheduling was accepted for November.", ["work", "talk"],
     "did my presentation submission get in?"),
    ("I want vegetarian meals on weekdays and allow fish at weekends.", ["food", "preference"],
     "my diet rules during the week"),
    ("The flat's smoke detector batteries were replaced in January.", ["home", "safety"],
     "when did I last change the alarm batteries?"),
    ("Release 2.3 is blocked on the memory leak in the thumbnail worker.", ["work", "release"],
     "what is holding up the next version?"),
    ("My pension contributions are 6 percent, matched by the employer up to 5.", ["money"],
     "how much does my company add to my retirement savings?"),
    ("The hiking group meets at the north car park at 7 am on the first Sunday of the month.",
     ["hobby", "schedule"], "where do the walkers gather?"),
    ("The printer on floor 2 jams with recycled paper; use the one by the kitchen instead.", ["work", "office"],
     "which printer should I avoid?"),
    ("Eva is the contact for the Zurich customer and speaks German and French.", ["people", "work"],
     "who handles the Swiss client?"),
    ("The SSL certificate for shop.example.com expires on 2 August.", ["work", "security"],
     "shop.example.com certificate"),
    ("Ticket OPS-7781 tracks the flaky nightly backup job.", ["work", "ops"], "OPS-7781"),
    ("I get migraines when I skip breakfast.", ["health"], "what triggers my headaches?"),
    ("The garden hose connector is the 3/4 inch thread, not the 1/2 inch one.", ["home", "garden"],
     "which size fitting does the outdoor water pipe need?"),
    ("Leo from accounting approves expenses above 500 euros.", ["work", "money", "people"],
     "who signs off on large expense claims?"),
    ("The training model checkpoint is stored in the bucket ml-artifacts-prod under runs/2026-09.",
     ["work", "ml"], "where did we save the trained weights?"),
    ("Mum's flight lands at Terminal 2 at 16:40 on Friday.", ["family", "travel"],
     "what time should I pick up my mother at the airport?"),
    ("The yoga studio changed its Thursday class from 6 pm to 7 pm.", ["health", "schedule"],
     "new time for the Thursday stretching session"),
]

PEOPLE = ["Maria", "Tom", "Anna", "Sam", "Priya", "Jonas", "Eva", "Leo", "Omar", "Chen", "Ines", "Kofi"]
PLACES = ["the office", "the lake house", "the gym", "the airport", "the library", "the clinic",
          "the garage", "the school", "the station", "the park"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
THINGS = ["the budget spreadsheet", "the team offsite", "the quarterly review", "the hiring plan",
          "the new laptop", "the insurance claim", "the tax return", "the release notes",
          "the garden fence", "the birthday dinner", "the database migration", "the holiday photos"]
TEMPLATES = [
    "{p} asked me to send {t} before {d}.",
    "Remember to call {p} about {t} on {d} morning.",
    "{p} will meet me at {pl} on {d} at {h}:00.",
    "I left {t} at {pl}; pick it up on {d}.",
    "{p} said {t} is postponed until next {d}.",
    "Booked a slot at {pl} for {d} at {h}:30.",
    "{p} likes to review {t} on {d} afternoons.",
    "Need to renew the parking permit for {pl} by {d}.",
    "{p} shared notes about {t}; read them before {d}.",
    "The meeting about {t} moved to {pl} on {d}.",
    "Bought tickets for {p} and me for {d} evening.",
    "{p} is on holiday until {d}; ask {q} about {t} instead.",
    "Paid {n} euros for {t} on {d}.",
    "{p} prefers tea to coffee and meets at {pl}.",
]


def main() -> None:
    rng = random.Random(7)
    lines = []
    queries = []
    for i, (text, tags, query) in enumerate(TARGETS, 1):
        mid = f"t{i:03d}"
        lines.append({"kind": "memory", "id": mid, "text": text, "tags": tags})
        queries.append({"kind": "query", "query": query, "relevant": [mid]})
    seen = set()
    n = 0
    while n < 280:
        t = rng.choice(TEMPLATES).format(p=rng.choice(PEOPLE), q=rng.choice(PEOPLE), pl=rng.choice(PLACES),
                                         d=rng.choice(DAYS), t=rng.choice(THINGS), h=rng.randint(8, 18),
                                         n=rng.randint(20, 900))
        if t in seen:
            continue
        seen.add(t)
        n += 1
        lines.append({"kind": "memory", "id": f"d{n:03d}", "text": t, "tags": ["note"]})
    rng.shuffle(lines)
    out = Path(__file__).with_name("recall_set.jsonl")
    with out.open("w") as f:
        for obj in lines + queries:
            f.write(json.dumps(obj) + "\n")
    print(f"{out}: {len(lines)} memories, {len(queries)} queries")


if __name__ == "__main__":
    main()
