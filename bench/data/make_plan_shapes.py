"""Writes plan_shapes.jsonl: requests labelled with the shape of the plan that serves them.

The set bench/embedder.py measures plan retrieval on, standing in for a person's approved
plans (the journal of this machine holds none yet). A plan's shape is its tool sequence
(``files.read>llm``); two requests with the same shape are served by the same kind of
plan, so the right approved example for a new request is one of its shape. 22 shapes of
the builtin tools, 8 requests each, written by hand once, before any ranking was chosen,
and not edited to suit one: different verbs and file names within a shape, and the same
file names and nouns across shapes (``notes.txt`` is read, searched, counted, copied and
deleted), so that shared words alone are ambiguous. The shell's example library
(``src/llmos/shell/examples``) is added by the bench itself. Lines: ``{"id", "request",
"shape"}``.

Run: python bench/data/make_plan_shapes.py  (rewrites the file next to it)
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPES: dict[str, list[str]] = {
    "files.read>llm": [
        "summarize notes.txt in three sentences",
        "translate letter.txt into French and save it as letter_fr.txt",
        "what is minutes.md about? give me the gist",
        "rewrite draft.txt so it sounds more polite",
        "make a bullet-point summary of report.txt and keep it in report_summary.txt",
        "explain the main argument of essay.md in plain words",
        "turn the meeting notes in standup.txt into a list of action items",
        "proofread readme.md and fix the spelling, saving the result to readme_fixed.md",
    ],
    "data.stat": [
        "what is the average price in products.csv?",
        "who has the highest score in results.csv?",
        "find the lowest temperature recorded in weather.csv",
        "total of the amount column in expenses.csv",
        "median age in people.csv",
        "which sale in sales.csv was the biggest, and how much was it?",
        "how much did we spend in total according to budget.csv",
        "tell me the mean rating in reviews.csv",
    ],
    "data.filter>data.stat": [
        "average salary of the engineers in staff.csv",
        "how much did customers from Berlin spend in total in orders.csv?",
        "keep only the rows of sales.csv from March in march.csv and give me their sum",
        "what is the top score among the students in class B in results.csv",
        "put the expensive products (price over 100) from products.csv in pricey.csv and tell me their average price",
        "mean temperature on rainy days in weather.csv",
        "total hours logged by Anna in timesheet.csv",
        "for the orders marked refunded in orders.csv, what is the largest amount?",
    ],
    "data.groupby>plot.chart": [
        "plot total sales per month from sales.csv",
        "bar chart of how many orders each customer placed in orders.csv",
        "draw the average temperature by city from weather.csv as temps.png",
        "chart the expenses per category in expenses.csv",
        "make a pie chart of headcount per department from staff.csv",
        "graph the number of reviews per product in reviews.csv",
        "visualise revenue by region from sales.csv and save the picture as regions.png",
        "show me a line chart of daily visits from traffic.csv",
    ],
    "data.groupby>llm>report.write": [
        "write a report sales_report.md on revenue per region with a chart",
        "make a markdown report of expenses by category in expenses.csv, with a short commentary",
        "prepare a summary document staff_report.md of salaries per department",
        "create a report of orders per customer from orders.csv with a bar chart and a few sentences on it",
        "produce a written report on average ratings per product from reviews.csv",
        "report on hours worked per person from timesheet.csv, with a chart and a paragraph",
        "I need a short report weather_report.md about rainfall per month with a graph",
        "build a report of page views per page from traffic.csv and comment on the top pages",
    ],
    "files.search>files.write": [
        "copy every line of server.log that contains ERROR into errors.txt",
        "collect the lines mentioning 'refund' in emails.txt into refunds.txt",
        "save all TODO lines from notes.txt into todos.txt",
        "pull the lines with 'timeout' out of app.log and put them in timeouts.txt",
        "gather every line of the diary that talks about Paris into paris.txt",
        "write the lines of access.log with status 404 into missing.txt",
        "extract each line containing an email address from contacts.txt to emails_only.txt",
        "keep the WARN lines of build.log in a new file warnings.txt",
    ],
    "files.search": [
        "which lines of notes.txt mention the dentist?",
        "find where 'deadline' appears in plan.md",
        "does server.log contain any ERROR lines?",
        "search the todo list in todo.txt for anything about taxes",
        "show me the lines of app.log that say timeout",
        "grep emails.txt for invoices",
        "is Paris mentioned anywhere in diary.txt?",
        "look for the word budget in minutes.md",
    ],
    "files.list>text.sort": [
        "sort the lines of every .txt file in lists/ alphabetically",
        "for each file in names/, sort its lines and save the result next to it",
        "alphabetise every list in the groceries folder",
        "put the lines of each .csv in exports/ in order, one sorted copy per file",
        "sort all text files in the words directory, writing sorted_<name> for each",
        "order the lines of every file in todo/ from A to Z",
        "go through each file in inbox/ and sort its lines",
        "every .md file in chapters/ should get a sorted copy of its lines",
    ],
    "files.write>python.run_file": [
        "write a script primes.py that prints the primes below 50 and run it",
        "make a python program that counts down from 10 and show me its output",
        "create hello.py printing hello world, then execute it",
        "write fib.py to print the first 15 Fibonacci numbers and run it",
        "code a small script that prints today's weekday and run it for me",
        "make squares.py that prints the squares of 1 to 10, run it and tell me the result",
        "write a program that reverses the string 'stressed' and run it",
        "create a python file that sums the numbers from 1 to 100, run it and report the total",
    ],
    "calc.eval": [
        "how many seconds are in a week",
        "what is 17% of 2350",
        "convert 72 fahrenheit to celsius",
        "what's 1234 times 5678",
        "how many hours are 3 days and 7 hours",
        "square root of 2 to five decimals",
        "if I save 250 a month, how much do I have after 18 months",
        "what is 2 to the power of 20",
    ],
    "calendar.add": [
        "put 'dentist' on my calendar next tuesday at 9",
        "add a meeting with Tom on friday at 3pm",
        "schedule 'team retro' for tomorrow at 16:00",
        "remember Anna's birthday dinner on the 14th at 7pm in my calendar",
        "book 'gym' on monday morning at 7",
        "add an event 'call the bank' for thursday at 11:30",
        "put the quarterly review on my calendar for 2 december at 10",
        "block wednesday 14:00 for 'write the report'",
    ],
    "data.rank": [
        "which laptop in laptops.csv should I buy? price matters most, then battery life",
        "rank the apartments in flats.csv by rent and size, rent under 1200",
        "pick the best supplier from suppliers.csv on price, delivery time and rating",
        "which candidate in candidates.csv fits best? experience counts most, then salary ask",
        "order the hotels in hotels.csv from best to worst on price and distance to the beach",
        "help me choose a phone from phones.csv: camera first, then price, at most 600",
        "score the job offers in offers.csv on salary, commute and holidays",
        "which car in cars.csv is the best deal on consumption and price?",
    ],
    "files.count": [
        "how many lines are in notes.txt?",
        "count the words in essay.md",
        "how long is server.log in lines",
        "number of characters in letter.txt",
        "how many words did I write in diary.txt",
        "count the lines of app.log",
        "what's the word count of readme.md",
        "tell me how many lines minutes.md has",
    ],
    "files.move": [
        "rename draft.txt to final.txt",
        "move report.pdf into the archive folder",
        "rename notes.txt to notes_old.txt",
        "put photo.jpg in the pictures directory",
        "change the name of data.csv to sales_2026.csv",
        "move all of budget.xlsx over to finance/",
        "rename the file todo.md to done.md",
        "shift minutes.md into the meetings folder",
    ],
    "files.write": [
        "create a file called notes.txt that says: buy milk",
        "write 'hello world' into greeting.txt",
        "make a new file shopping.txt with eggs, bread and butter, one per line",
        "save the text 'meeting moved to 3pm' as memo.txt",
        "create todo.md with a heading 'Today' and an empty checklist",
        "put my address, 12 Oak Street, into address.txt",
        "start a file ideas.txt containing 'app for plant watering'",
        "write a short poem about rain into poem.txt",
    ],
    "todo.add": [
        "add 'call mum' to my todo list",
        "remind me to pay the rent, put it on my list",
        "new task: renew the passport",
        "put 'buy a birthday present for Tom' on my to-do list",
        "I need to book the car service, add it to my tasks",
        "add a todo to water the plants",
        "note down as a task: answer Anna's email",
        "my todo list needs 'file the taxes'",
    ],
    "timer.set": [
        "remind me in 10 minutes to take the pizza out",
        "set a timer for 25 minutes",
        "ping me in an hour to stretch",
        "wake me up in 20 minutes",
        "in 5 minutes tell me to check the oven",
        "start a 3 minute timer for the tea",
        "alert me in half an hour to join the call",
        "give me a reminder in 45 minutes to leave for the station",
    ],
    "data.sort>data.write": [
        "sort products.csv by price and save it as products_sorted.csv",
        "order staff.csv by salary, highest first, into staff_by_salary.csv",
        "arrange results.csv by score descending and write it to ranking.csv",
        "save a copy of orders.csv sorted by date as orders_by_date.csv",
        "put the rows of expenses.csv in order of amount and store them in expenses_sorted.csv",
        "sort people.csv alphabetically by name into people_sorted.csv",
        "make weather_sorted.csv: weather.csv ordered by temperature",
        "reorder reviews.csv by rating and keep it as reviews_ranked.csv",
    ],
    "net.fetch>llm": [
        "fetch https://example.com/news and summarize it",
        "read the page at https://example.org/about and tell me what the company does",
        "download https://example.com/changelog and list what changed",
        "get https://example.net/recipe and give me the ingredients",
        "what does the article at https://example.com/post/42 say? short summary please",
        "open https://example.org/faq and answer: do they ship abroad?",
        "grab https://example.com/terms and point out anything about refunds",
        "load https://example.net/weather and tell me tomorrow's forecast",
    ],
    "files.copy": [
        "make a backup copy of notes.txt as notes.bak",
        "copy report.md into the shared folder",
        "duplicate budget.csv as budget_2027.csv",
        "back up config.json to config.json.orig",
        "copy minutes.md to the archive directory",
        "make a second copy of essay.md called essay_v2.md",
        "copy photo.jpg into backup/",
        "save a copy of todo.txt as todo_old.txt",
    ],
    "files.list>files.delete": [
        "delete all the .tmp files in this folder",
        "remove every .log file in logs/",
        "clean up: get rid of the .bak files here",
        "delete the empty files in drafts/",
        "remove all files in cache/",
        "throw away every .pyc file in build/",
        "delete all the old csv exports in exports/",
        "wipe the .swp files from this directory",
    ],
    "files.list": [
        "what files are in this folder?",
        "list everything in the reports directory",
        "which file here is the largest?",
        "show me the csv files in data/",
        "what's in the archive folder?",
        "list the pictures in photos/ with their sizes",
        "are there any .md files in notes/?",
        "which files changed most recently in this folder?",
    ],
}


def main() -> None:
    out = Path(__file__).with_name("plan_shapes.jsonl")
    rows = []
    for shape, requests in SHAPES.items():
        assert len(requests) == 8, shape
        for i, r in enumerate(requests):
            rows.append({"id": f"{shape.replace('>', '-')}-{i}", "request": r, "shape": shape})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} requests, {len(SHAPES)} shapes -> {out}")


if __name__ == "__main__":
    main()
