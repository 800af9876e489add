"""Leaderboard of evaluation summaries in SQLite (``irlvla-bench leaderboard add/show/export``).

See ``leaderboard/README.md`` for the commands and the database schema.
"""

from leaderboard.store import (AddResult, LeaderboardError, MixedResultsError, add_evaluation, add_evaluations,
                               open_db, ranking, token_rows)

__all__ = ["AddResult", "LeaderboardError", "MixedResultsError", "add_evaluation", "add_evaluations", "open_db",
           "ranking", "token_rows"]
