/* Binary trees (after the benchmarks-game program): builds and drops many complete binary
 * trees of 16-byte nodes while one long-lived tree stays. Pure single-threaded small-object
 * throughput: allocation fast path, free fast path, and locality.
 *
 *   binary_trees MAX_DEPTH
 */
#include "common.h"

struct node {
    struct node *left, *right;
};

static struct node *build(int depth) {
    struct node *n = xmalloc(sizeof *n);
    if (depth > 0) {
        n->left = build(depth - 1);
        n->right = build(depth - 1);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static long check_tree(const struct node *n) {
    return 1 + (n->left ? check_tree(n->left) + check_tree(n->right) : 0);
}

static void drop(struct node *n) {
    if (n->left) {
        drop(n->left);
        drop(n->right);
    }
    free(n);
}

int main(int argc, char **argv) {
    int max_depth = (int)arg_long(argc, argv, 1, 18);
    const int min_depth = 4;
    if (max_depth < min_depth + 2) max_depth = min_depth + 2;

    struct node *stretch = build(max_depth + 1);
    printf("stretch tree of depth %d\t check: %ld\n", max_depth + 1, check_tree(stretch));
    drop(stretch);

    struct node *long_lived = build(max_depth);
    for (int d = min_depth; d <= max_depth; d += 2) {
        long iters = 1L << (max_depth - d + min_depth), sum = 0;
        for (long i = 0; i < iters; i++) {
            struct node *t = build(d);
            sum += check_tree(t);
            drop(t);
        }
        printf("%ld\t trees of depth %d\t check: %ld\n", iters, d, sum);
    }
    long expect = (1L << (max_depth + 1)) - 1, got = check_tree(long_lived);
    if (got != expect) {
        fprintf(stderr, "binary_trees: long-lived tree has %ld nodes, expected %ld\n", got, expect);
        abort();
    }
    printf("long lived tree of depth %d\t check: %ld\n", max_depth, got);
    drop(long_lived);
    return 0;
}
