"""The evaluation pipeline: bring a defended model up once, then plan, generate (cached), judge
(cached), score, store and report."""
