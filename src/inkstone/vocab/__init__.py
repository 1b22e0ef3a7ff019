"""Vocabulary stories: short stories that use the words a learner must learn.

wordlists.py reads JLPT, HSK and the user's own lists; analysers.py cuts a
text into lemmas (Sudachi, jieba, lemminflect); matching.py says which target
words a story uses and how; metrics.py measures a story; loop.py writes,
analyses and revises through the Studio; rounds.py keeps each round's coverage
beside its history entry; training.py and batch.py turn accepted stories into
training rows, many at a time.
"""
