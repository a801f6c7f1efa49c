// Package docs holds the test that keeps the repository's Markdown in step
// with the tree: every relative link resolves and every repository path
// named in a code span exists.
package docs
