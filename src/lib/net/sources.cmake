# sources of /net: explicit list
