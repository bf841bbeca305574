import argparse
import csv


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the rows of a sales CSV.")
    parser.add_argument("csv")
    args = parser.parse_args(argv)
    for row in read_rows(args.csv):
        print(f"{row['item']}: {row['amount']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
