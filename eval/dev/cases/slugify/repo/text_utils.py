def title_case(text):
    return " ".join(w.capitalize() for w in text.split())
