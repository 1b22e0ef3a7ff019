"""Story memory: characters, plot events, world settings and key dialogue in ChromaDB."""
