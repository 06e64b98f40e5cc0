/* A small real C program for the ltrace / mtrace test traces (see build_trace_data.py):
 * counts the words of stdin in a chained hash table that grows by realloc, then prints the
 * most frequent one and frees everything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry { char *word; long count; struct entry *next; };

static unsigned long hash(const char *s) {
    unsigned long h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}

int main(void) {
    size_t nb = 8, n = 0;
    struct entry **tab = calloc(nb, sizeof *tab);
    char buf[256];
    while (scanf("%255s", buf) == 1) {
        unsigned long h = hash(buf);
        struct entry *e = tab[h % nb];
        while (e && strcmp(e->word, buf)) e = e->next;
        if (e) { e->count++; continue; }
        e = malloc(sizeof *e);
        e->word = malloc(strlen(buf) + 1);
        strcpy(e->word, buf);
        e->count = 1;
        e->next = tab[h % nb];
        tab[h % nb] = e;
        if (++n > 2 * nb) {  /* grow: rehash into a realloc'd table */
            size_t old = nb;
            nb *= 2;
            tab = realloc(tab, nb * sizeof *tab);
            memset(tab + old, 0, (nb - old) * sizeof *tab);
            for (size_t i = 0; i < old; i++) {
                struct entry *p = tab[i], *keep = NULL;
                while (p) {
                    struct entry *nx = p->next;
                    if (hash(p->word) % nb != i) { p->next = tab[hash(p->word) % nb]; tab[hash(p->word) % nb] = p; }
                    else { p->next = keep; keep = p; }
                    p = nx;
                }
                tab[i] = keep;
            }
        }
    }
    struct entry *best = NULL;
    for (size_t i = 0; i < nb; i++)
        for (struct entry *e = tab[i]; e; e = e->next)
            if (!best || e->count > best->count) best = e;
    if (best) printf("%s %ld (%zu distinct)\n", best->word, best->count, n);
    for (size_t i = 0; i < nb; i++) {
        struct entry *e = tab[i];
        while (e) { struct entry *nx = e->next; free(e->word); free(e); e = nx; }
    }
    free(tab);
    return 0;
}
